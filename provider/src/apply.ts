import { applyGuarded } from "./deadman/apply-guarded";
import { CommandError, SshConnectionError, StepError } from "./errors";
import { writeFileArgv, type Host, type RunResult } from "./host/host";
import {
  declareNestedCommands,
  declareSourcesWrapped,
  declareRunsInShell,
  scriptArgv,
  scriptIn,
  type ScriptCall,
} from "./host/script";
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
  /** A run of `ip` steps sent as one `ip -batch -` (argv holds its lines): each step's command. */
  readonly merged?: readonly Command[];
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

// How many plan steps a command carries.
const stepsIn = (c: Command): number => c.merged?.length ?? 1;

// A word `ip -batch` reads back unchanged: its reader (iproute2 getcmdline, makeargs) cuts a line
// at `#`, joins a line ending in a backslash, splits at blanks and takes '…' or "…" verbatim up to
// the same quote. Plain words need nothing; words with single inner spaces go in double quotes.
const PLAIN = /^[A-Za-z0-9_.:/@%+=,~-]+$/;
const SPACED = /^[A-Za-z0-9_.:/@%+=,~-]+( [A-Za-z0-9_.:/@%+=,~-]+)+$/;
// makeargs takes at most 99 words a line (and exits on more), far above any plan's.
const MAX_WORDS = 64;

/**
 * Returns the `ip -batch` line that runs the argv exactly as `ip` alone would, or undefined when it
 * cannot: not `ip`, a global option first (a line cannot carry one), or a word the reader would
 * change.
 */
export function ipBatchLine(argv: readonly string[]): string | undefined {
  const [ip, first, ...rest] = argv;
  if (ip !== "ip" || first === undefined || first.startsWith("-")) return undefined;
  if (argv.length > MAX_WORDS) return undefined;
  const words: string[] = [];
  for (const w of [first, ...rest]) {
    if (PLAIN.test(w)) words.push(w);
    else if (SPACED.test(w)) words.push(`"${w}"`);
    else return undefined;
  }
  return words.join(" ");
}

// The batch line of a step that can join an `ip -batch` run: a plain `ip` command without stdin
// that succeeds only with 0 (ip -batch exits 1 for any failing line).
function batchLineOf(step: Step): string | undefined {
  if (!("argv" in step) || step.stdin !== undefined) return undefined;
  const ok = step.okExitCodes;
  if (ok !== undefined && !(ok.length === 1 && ok[0] === 0)) return undefined;
  return ipBatchLine(step.argv);
}

// Returns the commands the steps run as: each run of two or more consecutive `ip` steps that batch
// lines can carry becomes one `ip -batch -` (one process on the host instead of one per step).
function commandsOf(steps: readonly Step[]): Command[] {
  const out: Command[] = [];
  let run: { line: string; c: Command }[] = [];
  const flush = () => {
    if (run.length >= 2) {
      const lines = run.map((r) => r.line);
      out.push({
        argv: lines,
        shown: ["ip", "-batch", "-", `(${lines.join("; ")})`],
        okExitCodes: [0],
        merged: run.map((r) => r.c),
      });
    } else out.push(...run.map((r) => r.c));
    run = [];
  };
  for (const step of steps) {
    const line = batchLineOf(step);
    if (line !== undefined) {
      run.push({ line, c: commandOf(step) });
      continue;
    }
    flush();
    out.push(commandOf(step));
  }
  flush();
  return out;
}

/**
 * Returns the batches the steps travel in: each batch is one remote command. A batch holds at
 * most one step with stdin, which reads the channel's stdin; every other command reads
 * /dev/null, so data never has to be split on the host. Consecutive `ip` steps share one command.
 */
export function batchSteps(steps: readonly Step[]): Command[][] {
  const batches: Command[][] = [];
  let current: Command[] = [];
  let hasStdin = false;
  for (const c of commandsOf(steps)) {
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
// its exit codes (`probe-bg`: it may run beside the others), a merged `ip` run with `ip-batch` (its
// words are the lines), the probes' systemd units with `units` (its words are the units and how
// they are asked about, for persist/unit-batch.sh); probes come after the steps. It runs each at
// once and keeps none; the lines of an `ip-batch` and the words of `units` are data, no command
// of their own. A kept script that runs in a shell comes as `. HASH ARGS...` and is sourced in a
// subshell (the last probe in the batch's own shell, a fork less); N then counts those words.
// Reviewed against declareRunsInShell's contract.
declareRunsInShell("apply-batch.sh");
declareSourcesWrapped("apply-batch.sh");
declareNestedCommands("apply-batch.sh", (args) => {
  const ranges: Array<[number, number, number]> = [];
  for (let i = 0; i + 2 < args.length;) {
    const n = Number(args[i + 2]);
    if (!Number.isInteger(n) || n < 0) break;
    if (args[i] !== "ip-batch" && args[i] !== "units") {
      ranges.push([i + 3, Math.min(i + 3 + n, args.length), i + 2]);
    }
    i += 3 + n;
  }
  return ranges;
});

// The provider's unit names (unitName, dnsmasqUnitName, guestUnitName, networkd's): no character
// that list-unit-files would take for a glob, none that ends an argument of units_batch, and at
// most systemd's 255 bytes: a name systemctl refuses would fail its answer about every unit.
const PLAIN_UNIT = /^[A-Za-z0-9_.:-]{1,247}\.service$/;

/**
 * Returns the words of the `units` command that asks systemd about the probes' units at once, one
 * systemctl per way of asking: only the ways two probes or more ask (one asks as cheaply itself).
 */
export function unitsWords(probes: readonly ProbeCommand[]): string[] {
  const words: string[] = [];
  for (const how of ["active", "pid", "enabled"] as const) {
    const asking = probes.map((p) => p.units?.[how] ?? []).filter((u) => u.length > 0);
    if (asking.length < 2) continue;
    const units = [...new Set(asking.flat())].filter((u) => PLAIN_UNIT.test(u));
    if (units.length > 0) words.push(`--${how}`, ...units);
  }
  return words;
}

function batchCall(
  batch: readonly Command[],
  probes: readonly ProbeCommand[] = [],
  probeKind?: string,
): ScriptCall {
  const word = (ok: string, c: { argv: readonly string[]; stdin?: string | undefined }) => [
    ok,
    c.stdin !== undefined ? "1" : "0",
    String(c.argv.length),
    ...c.argv,
  ];
  const units = unitsWords(probes);
  return scriptIn(__dirname, "apply-batch.sh", [
    ...batch.flatMap((c) => word(c.merged ? "ip-batch" : c.okExitCodes.join(","), c)),
    ...(units.length > 0 ? ["units", "0", String(units.length), ...units] : []),
    // an apply's probe that can take the `ip` lines of the apply's end (apply-batch.sh: only
    // when they come right before it)
    ...probes.flatMap((p) => word(probeKind ?? (p.takesIpLines ? "probe-ip" : "probe"), p)),
  ]);
}

/**
 * Returns the argv that runs the probes in one remote command, side by side when none reads stdin
 * and the host has more than two CPUs (so the command takes as long as the slowest, not the sum);
 * on two or fewer, one after the other, which costs such a host less and takes less time there
 * (apply-batch.sh decides).
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

// ip -batch ends at the first failing line and names it on stderr ("Command failed -:LINE"), after
// that line's own message; the lines after it did not run.
const IP_BATCH_FAILED = /^Command failed -:(\d+)\n?/m;

/**
 * Returns the failure of a merged `ip` run as that of its failing step: the step's own command and
 * ip's message for it. Without ip's line number (ip exited on its own or was killed mid-way) the
 * run is blamed from its first step, showing all its lines, and any of them may have run.
 */
function mergedFailure(
  label: string,
  run: Command,
  steps: readonly Command[],
  before: number,
  output: RunResult,
): StepError {
  const m = IP_BATCH_FAILED.exec(output.stderr);
  const line = m ? Number(m[1]) : 0;
  const step = steps[line - 1];
  if (!m || !step) return new StepError(before, new CommandError(label, run.shown, output), true);
  const stderr = output.stderr.slice(0, m.index) + output.stderr.slice(m.index + m[0].length);
  return new StepError(
    before + line - 1,
    new CommandError(label, step.shown, { ...output, stderr }),
  );
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
    const first = batch[0];
    // a merged `ip` run always goes through apply-batch.sh, which feeds ip its lines
    const single =
      batch.length === 1 && probes.length === 0 && first && !first.merged ? first : undefined;
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
    const count = batch.reduce((n, c) => n + stepsIn(c), 0);
    const what = `${count} step${count === 1 ? "" : "s"}`;
    const shown = ["sh", "apply-batch.sh", `(${probes.length ? `${what} and a probe` : what})`];
    let r;
    try {
      r = await host.run({
        argv,
        shown,
        ...(stdin !== undefined ? { stdin } : {}),
        // the apply that carries the observation after it is the operation's last command
        ...(probes.length > 0 ? { endsOperation: true } : {}),
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
      // steps, not commands, before the failing one
      const before = done + batch.slice(0, i).reduce((n, c) => n + stepsIn(c), 0);
      const output = {
        exitCode: Number(m[2]),
        stdout: section(r.stdout, i),
        stderr: section(r.stderr, i),
      };
      if (failed.merged) throw mergedFailure(host.label, failed, failed.merged, before, output);
      throw new StepError(before, new CommandError(host.label, failed.shown, output));
    }
    if (r.exitCode !== 0) throw new StepError(done, new CommandError(host.label, shown, r));
    done += count;
    if (probes.length) probed = probeResults(r, batch.length, 1)[0];
  }
  return probed;
}
