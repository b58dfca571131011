// The host-side lock: operations on objects that conflict (the same object, or two dnsmasq
// instances on one interface) run one at a time on a host, from observe to the observation after
// apply, even from two provider processes; operations on unrelated objects still run in parallel.
import { randomBytes } from "node:crypto";
import { CommandError, isCommandError, messageOf, SshConnectionError } from "../errors";
import type { Host, RunRequest } from "./host";
import { MAX_CHANNELS_PER_CONNECTION } from "./channels";
import { scriptArgv, scriptIn } from "./script";

/** How long an operation waits for each of its lock keys (seconds). */
export const LOCK_WAIT_SECONDS = 300;

/** The lock holder's deadline: it ends with its operation, so this only backs a lost release. */
export const LOCK_HOLD_DEADLINE_MS = 24 * 60 * 60 * 1000;

// lock-hold.sh exits 3 when the host cannot lock (no flock, /run not writable): run unlocked.
const UNLOCKABLE = 3;

/**
 * Locked operations at once per host: each holds a session for its lock besides the ones its
 * commands use, so at most half of a connection's sessions hold locks and the commands of the
 * locked operations always find one free (otherwise holders could take every session and wait).
 * The host's session limit can go down (sshd refusing sessions); below 2 there is no room for a
 * holder and operations run unlocked.
 */
export function lockedOperationsAllowed(host: Host): number {
  const sessions = host.sessionLimit?.() ?? MAX_CHANNELS_PER_CONNECTION;
  return Math.floor(sessions / 2);
}

/** Locked operations of this process per host: how many hold a lock, and who waits for a turn. */
const lockedOperations = new Map<string, { holding: number; waiting: Array<() => void> }>();

/** Returns the sorted, distinct lock keys ("Bridge.br0"); names are validated before they get here. */
export function lockKeys(keys: readonly string[]): string[] {
  for (const k of keys) {
    if (!/^[A-Za-z0-9_.-]{1,80}$/.test(k))
      throw new Error(`invalid host lock key ${JSON.stringify(k)}`);
  }
  // Code-point order, the same in every process, so two holders never wait on each other crosswise.
  return [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Runs `fn` with a host whose commands start only once the lock on `keys` is held on the host; the
 * lock is held by one extra session (lock-hold.sh) that ends when `fn` settles, or when the
 * connection drops (its session closes, so a lost provider never keeps it).
 */
export async function withHostLock<T>(
  host: Host,
  keys: readonly string[],
  signal: AbortSignal | undefined,
  fn: (locked: Host) => Promise<T>,
): Promise<T> {
  let turn = lockedOperations.get(host.label);
  if (!turn) {
    turn = { holding: 0, waiting: [] };
    lockedOperations.set(host.label, turn);
  }
  const t = turn;
  while (t.holding >= lockedOperationsAllowed(host) && lockedOperationsAllowed(host) > 0) {
    await new Promise<void>((resolve) => t.waiting.push(resolve));
  }
  if (lockedOperationsAllowed(host) === 0) return fn(host);
  t.holding++;
  try {
    return await holdWhile(host, keys, signal, fn);
  } finally {
    t.holding--;
    t.waiting.shift()?.();
  }
}

async function holdWhile<T>(
  host: Host,
  keys: readonly string[],
  signal: AbortSignal | undefined,
  fn: (locked: Host) => Promise<T>,
): Promise<T> {
  const token = randomBytes(8).toString("hex");
  const release = new AbortController();
  const lost = new AbortController();
  const holding = host.run({
    argv: scriptArgv(
      scriptIn(__dirname, "lock-hold.sh", [token, String(LOCK_WAIT_SECONDS), ...lockKeys(keys)]),
    ),
    reject: false,
    signal: signal ? AbortSignal.any([signal, release.signal]) : release.signal,
    // its own session, whose close releases the lock when this process is gone; a shell would
    // keep running it
    ownSession: true,
    deadlineMs: LOCK_HOLD_DEADLINE_MS,
  });
  // The holder ending before the operation does means the lock is gone (or was never taken).
  holding.then(
    (r) => {
      if (release.signal.aborted || r.exitCode === UNLOCKABLE) return;
      const said = r.stderr.trim() || `the lock holder exited ${r.exitCode}`;
      lost.abort(new Error(`host lock: ${said}`));
    },
    (e: unknown) => {
      if (release.signal.aborted) return;
      // A dropped connection stays that error, so the operation reports it as such.
      lost.abort(e instanceof SshConnectionError ? e : new Error(`host lock: ${messageOf(e)}`));
    },
  );
  try {
    return await fn(lockedHost(host, token, lost.signal));
  } finally {
    release.abort(new Error("released"));
  }
}

// Commands wait on the host for the lock until the first of them has run: by then it is held.
function lockedHost(host: Host, token: string, lost: AbortSignal): Host {
  let held = false;
  const address = host.sessionClientAddress?.bind(host);
  const fresh = host.runFresh?.bind(host);
  const sessions = host.sessionLimit?.bind(host);
  return {
    label: host.label,
    run: async (req: RunRequest) => {
      if (lost.aborted) throw lost.reason as Error;
      const signal = req.signal ? AbortSignal.any([req.signal, lost]) : lost;
      if (held) return host.run({ ...req, signal });
      const argv = scriptArgv(
        scriptIn(__dirname, "lock-wait.sh", [token, String(LOCK_WAIT_SECONDS), ...req.argv]),
      );
      try {
        const r = await host.run({ ...req, argv, shown: req.shown ?? req.argv, signal });
        held = true;
        return r;
      } catch (e) {
        if (lost.aborted) throw lost.reason as Error;
        // Name the command that failed, not the lock wrapper around it.
        if (isCommandError(e) && e.name === "CommandError")
          throw new CommandError(e.host, req.shown ?? req.argv, e);
        throw e;
      }
    },
    ...(address ? { sessionClientAddress: address } : {}),
    // a fresh connection (the dead-man timer's proof of a new login) is outside the lock
    ...(fresh ? { runFresh: fresh } : {}),
    ...(sessions ? { sessionLimit: sessions } : {}),
  };
}
