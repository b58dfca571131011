import { applyGuarded } from "./deadman/apply-guarded";
import { CommandError, SshConnectionError, StepError } from "./errors";
import { writeFileArgv, type Host } from "./host/host";
import { scriptArgv, scriptIn, type ScriptCall } from "./host/script";
import { stepArgv, stepDisplayArgv, type Step } from "./step";

const BEGIN = "@@pulumi-hypervisor-step";
const FAILED = "@@pulumi-hypervisor-failed";

interface Command {
  readonly argv: readonly string[];
  /** What errors show: a script by its name, not its body. */
  readonly shown: readonly string[];
  readonly stdin?: string;
  readonly okExitCodes: readonly number[];
}

function commandOf(step: Step): Command {
  if ("writeFile" in step) {
    const argv = writeFileArgv(step.writeFile.path, step.writeFile.mode);
    return { argv, shown: argv, stdin: step.writeFile.content, okExitCodes: [0] };
  }
  return {
    argv: stepArgv(step),
    shown: stepDisplayArgv(step),
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

// apply-batch.sh takes each command as `OK-CODES HAS-STDIN N WORD...`.
function batchCall(batch: readonly Command[]): ScriptCall {
  return scriptIn(
    __dirname,
    "apply-batch.sh",
    batch.flatMap((c) => [
      c.okExitCodes.join(","),
      c.stdin !== undefined ? "1" : "0",
      String(c.argv.length),
      ...c.argv,
    ]),
  );
}

// A session lost while its command ran leaves the command's effect unknown.
const lostWhileRunning = (e: unknown): boolean =>
  e instanceof SshConnectionError && e.kind === "lost";

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
  // A change of the management path runs under a dead-man timer, confirmed over a new login.
  if (await applyGuarded(host, steps, applyPlain)) return;
  await applyPlain(host, steps);
}

async function applyPlain(host: Host, steps: readonly Step[]): Promise<void> {
  let done = 0;
  for (const batch of batchSteps(steps)) {
    const single = batch.length === 1 ? batch[0] : undefined;
    if (single) {
      let r;
      try {
        r = await host.run({
          argv: single.argv,
          shown: single.shown,
          ...(single.stdin !== undefined ? { stdin: single.stdin } : {}),
          reject: false,
        });
      } catch (e) {
        throw new StepError(done, e, lostWhileRunning(e));
      }
      if (!single.okExitCodes.includes(r.exitCode)) {
        throw new StepError(done, new CommandError(host.label, single.shown, r));
      }
      done++;
      continue;
    }
    const stdin = batch.find((c) => c.stdin !== undefined)?.stdin;
    const argv = scriptArgv(batchCall(batch));
    const shown = ["sh", "apply-batch.sh", `(${batch.length} steps)`];
    let r;
    try {
      r = await host.run({
        argv,
        shown,
        ...(stdin !== undefined ? { stdin } : {}),
        reject: false,
      });
    } catch (e) {
      throw new StepError(done, e, lostWhileRunning(e));
    }
    const m = new RegExp(`\\n${FAILED} (\\d+) (\\d+)\\n`).exec(r.stderr);
    if (m) {
      const i = Number(m[1]);
      const failed = batch[i];
      if (!failed) throw new StepError(done, new CommandError(host.label, shown, r));
      throw new StepError(
        done + i,
        new CommandError(host.label, failed.shown, {
          exitCode: Number(m[2]),
          stdout: section(r.stdout, i),
          stderr: section(r.stderr, i),
        }),
      );
    }
    if (r.exitCode !== 0) throw new StepError(done, new CommandError(host.label, shown, r));
    done += batch.length;
  }
}
