import { applyGuarded } from "./deadman/apply-guarded";
import { CommandError, SshConnectionError, StepError } from "./errors";
import { writeFileArgv, type Host, type RunResult } from "./host/host";
import { declareNestedCommands, scriptArgv, scriptIn, type ScriptCall } from "./host/script";
import type { ProbeCommand } from "./resource";
import { stepArgv, stepDisplayArgv, type Step } from "./step";

const BEGIN = "@@pulumi-hypervisor-step";
const FAILED = "@@pulumi-hypervisor-failed";
const PROBE = "@@pulumi-hypervisor-probe";
const PROBED = "@@pulumi-hypervisor-probed";

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

// apply-batch.sh takes each command as `OK-CODES HAS-STDIN N WORD...`, a probe with `probe` for
// its exit codes (`probe-bg`: it may run beside the others); probes come after the steps. It runs
// each at once and keeps none.
declareNestedCommands("apply-batch.sh", (args) => {
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i + 2 < args.length;) {
    const n = Number(args[i + 2]);
    if (!Number.isInteger(n) || n < 0) break;
    ranges.push([i + 3, Math.min(i + 3 + n, args.length)]);
    i += 3 + n;
  }
  return ranges;
});

function batchCall(
  batch: readonly Command[],
  probes: readonly ProbeCommand[] = [],
  probeKind = "probe",
): ScriptCall {
  const word = (ok: string, c: { argv: readonly string[]; stdin?: string | undefined }) => [
    ok,
    c.stdin !== undefined ? "1" : "0",
    String(c.argv.length),
    ...c.argv,
  ];
  return scriptIn(__dirname, "apply-batch.sh", [
    ...batch.flatMap((c) => word(c.okExitCodes.join(","), c)),
    ...probes.flatMap((p) => word(probeKind, p)),
  ]);
}

/**
 * Returns the argv that runs the probes in one remote command, side by side when none reads stdin
 * (so the command takes as long as the slowest, not the sum).
 */
export function probeBatchArgv(probes: readonly ProbeCommand[]): string[] {
  const side = probes.length > 1 && probes.every((p) => p.stdin === undefined);
  return scriptArgv(batchCall([], probes, side ? "probe-bg" : "probe"));
}

/**
 * Returns each probe's own exit code and output from a batch whose commands `first` on were the
 * probes, exactly as the probe alone would have printed them; undefined for a probe whose output
 * is not there (the batch did not run it).
 */
export function probeResults(
  r: RunResult,
  first: number,
  count: number,
): (RunResult | undefined)[] {
  const out: (RunResult | undefined)[] = [];
  for (let i = first; i < first + count; i++) {
    const start = `${PROBE} ${i}\n`;
    const o = r.stdout.indexOf(start);
    const e = r.stderr.indexOf(start);
    const m = new RegExp(`\\n${PROBED} ${i} (\\d+)\\n`).exec(r.stderr);
    if (o < 0 || e < 0 || !m || m.index < e) {
      out.push(undefined);
      continue;
    }
    // up to the next probe's mark, whichever it is (probes run side by side print in order)
    const marks = new RegExp(`${PROBE} \\d+\\n`, "g");
    marks.lastIndex = o + start.length;
    const next = marks.exec(r.stdout)?.index ?? r.stdout.length;
    out.push({
      exitCode: Number(m[1]),
      stdout: r.stdout.slice(o + start.length, next),
      stderr: r.stderr.slice(e + start.length, m.index),
    });
  }
  return out;
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
  const probe = text.indexOf(`${PROBE} ${i + 1}\n`, from);
  const end = [next, failed, probe]
    .filter((n) => n >= 0)
    .reduce((a, b) => Math.min(a, b), text.length);
  return text.slice(from, end);
}

/**
 * Applies the steps in as few round trips as the stdin rule allows; a failure is reported as the
 * failing step's own command, exit code and output, with how many steps completed before it.
 * A probe given runs in the last batch once every step succeeded, so applying and observing the
 * result is one round trip: its result (exit code and output as if run alone) is returned, or
 * undefined when it did not run there (a guarded apply, or stdin on both it and a step).
 */
export async function applySteps(
  host: Host,
  steps: readonly Step[],
  probe?: ProbeCommand,
): Promise<RunResult | undefined> {
  // A change of the management path runs under a dead-man timer, confirmed over a new login.
  if (await applyGuarded(host, steps, (h, s) => applyPlain(h, s).then(() => undefined))) {
    return undefined;
  }
  return applyPlain(host, steps, probe);
}

async function applyPlain(
  host: Host,
  steps: readonly Step[],
  probe?: ProbeCommand,
): Promise<RunResult | undefined> {
  let done = 0;
  const batches = batchSteps(steps);
  const last = batches[batches.length - 1];
  // The stdin rule holds for the probe too: with stdin on both, it runs on its own afterwards.
  const fits =
    probe !== undefined &&
    last !== undefined &&
    (probe.stdin === undefined || last.every((c) => c.stdin === undefined));
  let probed: RunResult | undefined;
  for (const batch of batches) {
    const probes = fits && batch === last && probe ? [probe] : [];
    const single = batch.length === 1 && probes.length === 0 ? batch[0] : undefined;
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
    const stdin = [...batch, ...probes].find((c) => c.stdin !== undefined)?.stdin;
    const argv = scriptArgv(batchCall(batch, probes));
    const what = `${batch.length} step${batch.length === 1 ? "" : "s"}`;
    const shown = ["sh", "apply-batch.sh", `(${probes.length ? `${what} and a probe` : what})`];
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
    if (probes.length) probed = probeResults(r, batch.length, 1)[0];
  }
  return probed;
}
