// The host-side lock: operations on objects that conflict (the same object, or two dnsmasq
// instances on one interface) run one at a time on a host, from observe to the observation after
// apply, even from two provider processes; operations on unrelated objects still run in parallel.
//
// Two ways to hold it. In a remote shell (the pooled connection's default) the operation's first
// command takes it (lock-take.sh starts a holder beside the command), and its last command's
// request names it so the shell releases it after that command (a one-way frame when the
// operation ends otherwise), so the lock costs no round trip and no session; the holder ends
// with the connection. On a
// session per command, a holder session of its own (lock-hold.sh) holds it, and its close
// releases it. Within one process, operations on the same keys queue here first, so none of them
// waits on the host for a lock its own process holds (which could leave every shell waiting).
import { randomBytes } from "node:crypto";
import { CommandError, isCommandError, messageOf, SshConnectionError } from "../errors";
import type { Host, RunRequest, RunResult, ShellLockHold } from "./host";
import { MAX_CHANNELS_PER_CONNECTION } from "./channels";
import {
  declareNestedCommands,
  declareRunsInShell,
  declareSourcesWrapped,
  scriptArgv,
  scriptIn,
} from "./script";

// Both run their command (after `--`, after the token) at once, in their own process.
declareNestedCommands("lock-take.sh", (args) => {
  const i = args.indexOf("--");
  return i < 0 ? [] : [[i + 1, args.length]];
});
declareNestedCommands("lock-check.sh", (args) => [[1, args.length]]);
// Reviewed against declareRunsInShell's contract.
declareRunsInShell("lock-take.sh");
declareRunsInShell("lock-check.sh");
// ...and run what they wrap with run-wrapped.sh: a shell-safe kept script in their own process.
declareSourcesWrapped("lock-take.sh");
declareSourcesWrapped("lock-check.sh");

/** How long an operation waits for each of its lock keys (seconds). */
export const LOCK_WAIT_SECONDS = 300;

/** The lock holder's deadline: it ends with its operation, so this only backs a lost release. */
export const LOCK_HOLD_DEADLINE_MS = 24 * 60 * 60 * 1000;

// lock-hold.sh exits 3 when the host cannot lock (no flock, /run not writable): run unlocked.
const UNLOCKABLE = 3;

/**
 * Locked operations at once per host with a holder session: each holds a session for its lock
 * besides the ones its commands use, so at most half of a connection's sessions hold locks and the commands of the
 * locked operations always find one free (otherwise holders could take every session and wait).
 * The host's session limit can go down (sshd refusing sessions); below 2 there is no room for a
 * holder and operations run unlocked.
 */
export function lockedOperationsAllowed(host: Host): number {
  const sessions = host.sessionLimit?.() ?? MAX_CHANNELS_PER_CONNECTION;
  return Math.floor(sessions / 2);
}

/** Holder sessions of this process per host: how many hold a lock, and who waits for a turn. */
const lockedOperations = new Map<string, { holding: number; waiting: Array<() => void> }>();

/** This process's operations per host and key: the key is free when its queue is empty. */
const keyQueues = new WeakMap<Host, Map<string, Array<() => void>>>();

// Exit codes of lock-take.sh and of the check before later commands.
const NOT_IN_SHELL = 124;
const NOT_LOCKED = 125;

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
 * Runs `fn` with a host whose commands start only once the lock on `keys` is held on the host;
 * the lock goes when `fn` settles, or when the connection drops (a lost provider never keeps it).
 */
export async function withHostLock<T>(
  host: Host,
  keys: readonly string[],
  signal: AbortSignal | undefined,
  fn: (locked: Host) => Promise<T>,
): Promise<T> {
  const sorted = lockKeys(keys);
  const leave = await queueForKeys(host, sorted, signal);
  try {
    const hold = host.shellLock?.();
    if (hold) return await holdInShell(host, hold, sorted, signal, fn);
    return await withHolderSession(host, sorted, signal, fn);
  } finally {
    leave();
  }
}

// Waits until no other operation of this process holds one of the keys on this host; returns
// the function that lets the next one in.
async function queueForKeys(
  host: Host,
  keys: readonly string[],
  signal: AbortSignal | undefined,
): Promise<() => void> {
  let queues = keyQueues.get(host);
  if (!queues) {
    queues = new Map();
    keyQueues.set(host, queues);
  }
  const q = queues;
  const mine: Array<() => void> = [];
  try {
    // in sorted order, so two operations never wait on each other crosswise
    for (const key of keys) {
      let queue = q.get(key);
      if (!queue) {
        queue = [];
        q.set(key, queue);
      }
      const turn = queue;
      const entry: { go?: () => void } = {};
      const ready = new Promise<void>((resolve) => {
        entry.go = resolve;
      });
      const go = entry.go as () => void;
      turn.push(go);
      mine.push(() => {
        turn.splice(turn.indexOf(go), 1);
        if (turn.length === 0) q.delete(key);
        else turn[0]?.();
      });
      if (turn[0] === go) go();
      await abortable(ready, signal);
    }
  } catch (e) {
    for (const leave of mine.reverse()) leave();
    throw e;
  }
  return () => {
    for (const leave of mine.reverse()) leave();
  };
}

function abortable(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<void>((resolve, reject) => {
    const stop = (): void => reject(signal.reason as Error);
    signal.addEventListener("abort", stop, { once: true });
    p.then(() => {
      signal.removeEventListener("abort", stop);
      resolve();
    }, reject);
  });
}

// The lock taken by the first command in a remote shell; a host that turns out to run commands
// on sessions of their own (exit 124) gets a holder session instead.
async function holdInShell<T>(
  host: Host,
  hold: ShellLockHold,
  keys: readonly string[],
  signal: AbortSignal | undefined,
  fn: (locked: Host) => Promise<T>,
): Promise<T> {
  const token = randomBytes(8).toString("hex");
  // what later commands and the release name: the holder reads the fifo of the first key
  const ref = `${token}/${keys[0] ?? ""}`;
  const op: { state: "new" | "held" | "holder" } = { state: "new" };
  // set when the host ran the first command on a session of its own: from then on, that way
  let viaHolder: Host | undefined;
  let holderDone: Promise<void> | undefined;
  let leaveHolder: (() => void) | undefined;
  // the first command went out: its holder may hold the lock, whatever came back
  let sent = false;
  // the operation's last command ended in a shell that released the lock right after it
  let releasedThere = false;

  const locked: Host = withPassThrough(host, async (req: RunRequest) => {
    if (viaHolder) return viaHolder.run(req);
    const shown = req.shown ?? req.argv;
    const argv =
      op.state === "new"
        ? scriptArgv(
            scriptIn(__dirname, "lock-take.sh", [
              token,
              String(LOCK_WAIT_SECONDS),
              ...keys,
              "--",
              ...req.argv,
            ]),
          )
        : scriptArgv(scriptIn(__dirname, "lock-check.sh", [ref, ...req.argv]));
    // a later command that ends the operation takes the release along: no frame of its own
    const { endsOperation, ...rest } = req;
    const release = endsOperation && op.state === "held" ? { releasesHostLock: ref } : {};
    if (op.state === "new") sent = true;
    const r = await host.run({ ...rest, ...release, argv, shown, reject: false });
    if (r.hostLockReleased) releasedThere = true;
    const said = r.stderr.trim();
    if (
      op.state === "new" &&
      r.exitCode === NOT_IN_SHELL &&
      said === "host lock: not in a remote shell"
    ) {
      // a shell did not start here after all: hold the lock with a session of its own
      op.state = "holder";
      const entered = deferred<Host>();
      holderDone = withHolderSession(host, keys, signal, (h) => {
        entered.resolve(h);
        return new Promise<void>((resolve) => {
          leaveHolder = resolve;
        });
      }).catch((e: unknown) => entered.reject(e));
      viaHolder = await entered.promise;
      return viaHolder.run(req);
    }
    if (r.exitCode === NOT_LOCKED && said.startsWith("host lock: ")) throw new Error(said);
    if (op.state === "new") op.state = "held";
    if (!(req.okExitCodes ?? [0]).includes(r.exitCode) && req.reject !== false) {
      throw new CommandError(host.label, shown, r);
    }
    return r;
  });

  try {
    return await fn(locked);
  } finally {
    // one-way and harmless when nothing is held (the holder was killed with its command)
    hold.release(sent && op.state !== "holder" && !releasedThere ? ref : undefined);
    leaveHolder?.();
    await holderDone;
  }
}

/** Returns the argv that releases the lock `TOKEN/FIRSTKEY` when no remote shell takes the frame. */
export function lockReleaseArgv(lock: string): string[] {
  return scriptArgv(scriptIn(__dirname, "lock-release.sh", [lock]));
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// A host like `host` whose run is `run`; the session's ends, fresh logins and the session limit
// pass through (a fresh connection, the dead-man timer's proof of a new login, is outside the lock).
function withPassThrough(host: Host, run: (req: RunRequest) => Promise<RunResult>): Host {
  const address = host.sessionClientAddress?.bind(host);
  const port = host.sessionServerPort?.bind(host);
  const fresh = host.runFresh?.bind(host);
  const sessions = host.sessionLimit?.bind(host);
  return {
    label: host.label,
    run,
    ...(address ? { sessionClientAddress: address } : {}),
    ...(port ? { sessionServerPort: port } : {}),
    ...(fresh ? { runFresh: fresh } : {}),
    ...(sessions ? { sessionLimit: sessions } : {}),
  };
}

// The holder-session way, with at most half of the connection's sessions holding locks.
async function withHolderSession<T>(
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
      scriptIn(__dirname, "lock-hold.sh", [token, String(LOCK_WAIT_SECONDS), ...keys]),
    ),
    reject: false,
    signal: signal ? AbortSignal.any([signal, release.signal]) : release.signal,
    // its own session, whose close releases the lock when this process is gone
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
  return withPassThrough(host, async (req: RunRequest) => {
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
  });
}
