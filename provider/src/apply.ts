import { CommandError, StepError } from "./errors";
import { writeFileArgv, type Host } from "./host/host";
import { quoteArgv } from "./host/quote";
import type { Step } from "./step";

const BEGIN = "@@pulumi-hypervisor-step";
const FAILED = "@@pulumi-hypervisor-failed";

interface Command {
  readonly argv: readonly string[];
  readonly stdin?: string;
  readonly okExitCodes: readonly number[];
}

function commandOf(step: Step): Command {
  if ("writeFile" in step) {
    return {
      argv: writeFileArgv(step.writeFile.path, step.writeFile.mode),
      stdin: step.writeFile.content,
      okExitCodes: [0],
    };
  }
  return {
    argv: step.argv,
    ...(step.stdin !== undefined ? { stdin: step.stdin } : {}),
    okExitCodes: step.okExitCodes ?? [0],
  };
}

/**
 * Returns the batches the steps travel in: each batch is one remote command. A batch holds at
 * most one step with stdin, which reads the channel's stdin; every other command reads
 * /dev/null, so data never has to be split on the host.
 */
export function batchSteps(steps: readonly Step[]): Command[][] {
  const batches: Command[][] = [];
  let current: Command[] = [];
  let hasStdin = false;
  for (const step of steps) {
    const c = commandOf(step);
    if (c.stdin !== undefined && hasStdin) {
      batches.push(current);
      current = [];
      hasStdin = false;
    }
    current.push(c);
    hasStdin ||= c.stdin !== undefined;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** Returns the script that runs a batch, marking each step on stdout and stderr. */
export function batchScript(batch: readonly Command[]): string {
  const lines: string[] = [];
  batch.forEach((c, i) => {
    lines.push(`printf '%s %d\\n' ${BEGIN} ${i}; printf '%s %d\\n' ${BEGIN} ${i} >&2`);
    lines.push(c.stdin !== undefined ? quoteArgv(c.argv) : `${quoteArgv(c.argv)} </dev/null`);
    lines.push(
      `rc=$?; case $rc in ${c.okExitCodes.join("|")}) ;; *) printf '\\n%s %d %d\\n' ${FAILED} ${i} "$rc" >&2; exit 1;; esac`,
    );
  });
  return lines.join("\n");
}

function section(text: string, i: number): string {
  const start = text.indexOf(`${BEGIN} ${i}\n`);
  if (start < 0) return "";
  const from = start + `${BEGIN} ${i}\n`.length;
  const next = text.indexOf(`${BEGIN} ${i + 1}\n`, from);
  const failed = text.indexOf(`\n${FAILED} `, from);
  const end = [next, failed].filter((n) => n >= 0).reduce((a, b) => Math.min(a, b), text.length);
  return text.slice(from, end);
}

/**
 * Applies the steps in as few round trips as the stdin rule allows; a failure is reported as the
 * failing step's own command, exit code and output, with how many steps completed before it.
 */
export async function applySteps(host: Host, steps: readonly Step[]): Promise<void> {
  let done = 0;
  for (const batch of batchSteps(steps)) {
    const single = batch.length === 1 ? batch[0] : undefined;
    if (single) {
      try {
        await host.run({
          argv: single.argv,
          ...(single.stdin !== undefined ? { stdin: single.stdin } : {}),
          okExitCodes: single.okExitCodes,
        });
      } catch (e) {
        throw new StepError(done, e);
      }
      done++;
      continue;
    }
    const stdin = batch.find((c) => c.stdin !== undefined)?.stdin;
    const argv = ["sh", "-c", batchScript(batch)];
    let r;
    try {
      r = await host.run({ argv, ...(stdin !== undefined ? { stdin } : {}), reject: false });
    } catch (e) {
      throw new StepError(done, e);
    }
    const m = new RegExp(`\\n${FAILED} (\\d+) (\\d+)\\n`).exec(r.stderr);
    if (m) {
      const i = Number(m[1]);
      const failed = batch[i];
      if (!failed) throw new StepError(done, new CommandError(host.label, argv, r));
      throw new StepError(
        done + i,
        new CommandError(host.label, failed.argv, {
          exitCode: Number(m[2]),
          stdout: section(r.stdout, i),
          stderr: section(r.stderr, i),
        }),
      );
    }
    if (r.exitCode !== 0) throw new StepError(done, new CommandError(host.label, argv, r));
    done += batch.length;
  }
}
