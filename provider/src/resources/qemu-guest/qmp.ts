import { z } from "zod";

import { scriptIn } from "../../host/script";
import type { Step } from "../../step";

// QMP is spoken from the host itself, through `socat`, by the shell function in qmp.sh.

/** Returns the QMP command object as the one line QEMU reads. */
export function qmpCommand(execute: string, args?: Record<string, unknown>): string {
  return JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
}

/** Returns a step that runs QMP commands on the guest's monitor socket and fails on an error answer. */
export function qmpStep(summary: string, socket: string, commands: readonly string[]): Step {
  return { summary, script: scriptIn(__dirname, "qmp-step.sh", [socket, ...commands]) };
}

const QmpAnswer = z.union([
  z.object({ return: z.unknown() }).loose(),
  z.object({ error: z.object({ class: z.string(), desc: z.string() }).loose() }).loose(),
]);
export type QmpAnswer = z.infer<typeof QmpAnswer>;

/** Returns the answers printed by the `qmp` function, one per line, validated. */
export function parseQmpAnswers(text: string): QmpAnswer[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      try {
        return QmpAnswer.parse(JSON.parse(l));
      } catch (e) {
        throw new Error(
          `unexpected QMP answer ${JSON.stringify(l.slice(0, 200))}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    });
}

export const QueryStatus = z.object({ status: z.string(), running: z.boolean() }).loose();
export const QueryName = z.object({ name: z.string().optional() }).loose();
export const QueryKvm = z.object({ enabled: z.boolean(), present: z.boolean() }).loose();

/** Returns the `return` value of an answer parsed with the schema, or undefined for an error answer. */
export function answerValue<T>(
  answer: QmpAnswer | undefined,
  schema: z.ZodType<T>,
  what: string,
): T | undefined {
  if (answer === undefined || !("return" in answer)) return undefined;
  const r = schema.safeParse(answer.return);
  if (!r.success) throw new Error(`unexpected QMP answer to ${what}: ${r.error.message}`);
  return r.data;
}
