// Read-only observations asked at once of one host (a preview's plannedSteps, a refresh, the check
// of a replacement) travel in one remote command: the probes run one after the other in
// apply-batch.sh and each caller gets its own probe's exit code and output, as if it ran alone.
// Only observations outside the host lock come here: a locked operation's first command waits for
// its lock on the host, so its probe must never ride in another operation's command.
import { probeBatchArgv, probeResults } from "./apply";
import { CommandError } from "./errors";
import { sshPoolEnabled } from "./host/pool";
import { quoteArgv } from "./host/quote";
import { argvWithCompactScripts } from "./host/script";
import type { Host, RunResult } from "./host/host";
import {
  probeCommand,
  probeOutput,
  type ObserveContext,
  type Observer,
  type ProbeCommand,
} from "./resource";

/** How long the first observation of a batch waits for others (the engine asks for them at once). */
export const COALESCE_WINDOW_MS = 3;

// sshd hands the command to the login shell as one argument, which Linux caps at 128 KiB
// (MAX_ARG_STRLEN, 131,072 bytes with its NUL). The probes of a batch are counted as they go on
// that line, quoted, with apply-batch.sh's three words before each and their systemd units (each
// once per way the batch's `units` command asks); the rest (apply-batch.sh and unit-batch.sh, env
// and sudo's words) takes 7-9 KB, so a batch at this limit stays below the cap (a unit test
// builds one).
export const MAX_BATCH_BYTES = 116_000;

interface Waiter {
  readonly probe: ProbeCommand;
  readonly resolve: (r: RunResult) => void;
  readonly reject: (e: unknown) => void;
}

interface Pending {
  waiters: Waiter[];
  bytes: number;
  /** The systemd units its probes ask about, by how ("active UNIT"): counted in bytes once. */
  units: Set<string>;
  timer: NodeJS.Timeout;
}

// By the host object: the pool gives one per connection, so the callers share its credentials.
const pending = new WeakMap<Host, Pending>();

// The systemd units a probe asks about, each keyed by how it asks ("active UNIT").
const unitKeys = (p: ProbeCommand): string[] =>
  (["active", "pid", "enabled"] as const).flatMap((how) =>
    (p.units?.[how] ?? []).map((u) => `${how} ${u}`),
  );

// The probe's words as the command line carries them at most (its scripts' compact text, as on a
// session of its own; a remote shell's request refers to kept texts instead), with apply-batch.sh's
// before them (`probe-bg 0 N `), and its units that the batch does not ask about yet. Counted
// with the scripts' comments, a batch of ten bridge looks went over the limit that twenty fit.
function sizeOf(p: ProbeCommand, asked: ReadonlySet<string>): number {
  const words = argvWithCompactScripts(p.argv);
  let bytes = Buffer.byteLength(quoteArgv(words)) + `probe-bg 0 ${words.length} `.length + 1;
  for (const key of new Set(unitKeys(p))) {
    // the unit's word on the `units` command line, and its space
    if (!asked.has(key)) bytes += Buffer.byteLength(key.slice(key.indexOf(" ") + 1)) + 1;
  }
  return bytes;
}

function rejection(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error(String(r));
}

/**
 * Returns the probe's result, run in one remote command with the other probes asked of the same
 * host within a few milliseconds; a non-zero exit throws the CommandError running it alone would
 * throw, and fails only this caller. A probe that reads stdin runs alone. Aborting the signal
 * fails this caller only (the others' command goes on).
 */
export function runProbeCoalesced(
  host: Host,
  probe: ProbeCommand,
  signal?: AbortSignal,
): Promise<RunResult> {
  if (signal?.aborted) return Promise.reject(rejection(signal));
  const result = new Promise<RunResult>((resolve, reject) => {
    // One connection per command (PULUMI_HYPERVISOR_SSH_POOL=off) is the model of
    // @pulumi/command that the pooled mode is measured against: each probe its own command there.
    if (probe.stdin !== undefined || !sshPoolEnabled()) {
      runAlone(host, { probe, resolve, reject });
      return;
    }
    let p = pending.get(host);
    if (p && p.bytes + sizeOf(probe, p.units) > MAX_BATCH_BYTES) {
      clearTimeout(p.timer);
      flush(host, p);
      p = undefined;
    }
    if (!p) {
      const fresh: Pending = {
        waiters: [],
        bytes: 0,
        units: new Set(),
        timer: setTimeout(() => flush(host, fresh), COALESCE_WINDOW_MS),
      };
      pending.set(host, fresh);
      p = fresh;
    }
    p.waiters.push({ probe, resolve, reject });
    p.bytes += sizeOf(probe, p.units);
    for (const key of unitKeys(probe)) p.units.add(key);
  });
  if (!signal) return result;
  return new Promise<RunResult>((resolve, reject) => {
    const onAbort = (): void => reject(rejection(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    result.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Observes like the module's own observe (same state, same errors), batched with its neighbours. */
export async function observeCoalesced<I, S>(
  mod: Observer<I, S>,
  host: Host,
  inputs: I,
  ctx: ObserveContext,
  signal?: AbortSignal,
): Promise<S> {
  const r = await runProbeCoalesced(host, probeCommand(mod.probe(inputs, ctx)), signal);
  return mod.parse(r, inputs, ctx);
}

function runAlone(host: Host, w: Waiter): void {
  host
    .run({
      argv: w.probe.argv,
      shown: w.probe.shown,
      ...(w.probe.stdin !== undefined ? { stdin: w.probe.stdin } : {}),
      reject: false,
    })
    .then((r) => w.resolve(probeOutput(host.label, w.probe, r)))
    .catch(w.reject);
}

function flush(host: Host, p: Pending): void {
  if (pending.get(host) === p) pending.delete(host);
  const [only, ...more] = p.waiters;
  if (!only) return;
  if (more.length === 0) {
    runAlone(host, only);
    return;
  }
  const all = p.waiters;
  const shown = ["sh", "apply-batch.sh", `(${all.length} probes)`];
  host.run({ argv: probeBatchArgv(all.map((w) => w.probe)), shown, reject: false }).then(
    (r) => {
      const results = probeResults(r, 0, all.length);
      all.forEach((w, i) => {
        const mine = results[i];
        // A probe whose output is missing did not run: the batch itself failed.
        if (!mine) w.reject(new CommandError(host.label, shown, r));
        else {
          try {
            w.resolve(probeOutput(host.label, w.probe, mine));
          } catch (e) {
            w.reject(e);
          }
        }
      });
    },
    (e: unknown) => {
      for (const w of all) w.reject(e);
    },
  );
}
