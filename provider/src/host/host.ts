/** One remote command: an argv (never a shell string) and optional bytes for its stdin. */
export interface RunRequest {
  readonly argv: readonly string[];
  readonly stdin?: string | Buffer;
  /** Exit codes that count as success (default [0]). */
  readonly okExitCodes?: readonly number[];
  /** When false, a non-ok exit resolves instead of rejecting (for probes). Default true. */
  readonly reject?: boolean;
  /** Aborting it stops the command: its session is closed (engine Cancel, customTimeouts). */
  readonly signal?: AbortSignal;
  /** The command as errors about its session show it (a script by name, not its body). */
  readonly shown?: readonly string[];
  /**
   * Milliseconds the command may run before it is killed with what it started and the run
   * rejects with CommandDeadlineError (default DEFAULT_DEADLINE_MS): no command hangs forever.
   */
  readonly deadlineMs?: number;
  /**
   * Run on an SSH session of its own instead of in a pooled remote shell: for a holder whose end
   * is its session closing (the host lock), which a shell would outlive.
   */
  readonly ownSession?: boolean;
  /**
   * The operation's last command (the apply that carries the observation after it): a host lock
   * the operation holds may go when it ends, in the same round trip (host/lock.ts).
   */
  readonly endsOperation?: boolean;
  /**
   * The host lock (`TOKEN/FIRSTKEY`) a remote shell releases once this command ends, before its
   * reply (set by host/lock.ts for an operation's last command; a host without shells ignores it).
   */
  readonly releasesHostLock?: string;
}

/** How long a remote command may run unless its request says otherwise: 15 minutes. */
export const DEFAULT_DEADLINE_MS = 15 * 60 * 1000;

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** True when a remote shell ran the command and released RunRequest.releasesHostLock after it. */
  readonly hostLockReleased?: boolean;
}

/** An operation's hold on a connection whose shells take its host lock (Host.shellLock). */
export interface ShellLockHold {
  /** Ends the hold; releases the lock `TOKEN/FIRSTKEY` on the host when one is given. */
  release(lock: string | undefined): void;
}

/** How an operation asks for the session's ends. */
export interface SessionEndsOptions {
  /**
   * false: the operation will not run a command of its own (its look rides in a batch shared with
   * others), so waiting for the ends starts no shell for it meanwhile. Default true.
   */
  readonly ownCommand?: boolean;
}

/** What every resource talks to: a Linux host that runs argv commands. */
export interface Host {
  /** "user@host:port", used in every log line and error. */
  readonly label: string;
  run(req: RunRequest): Promise<RunResult>;
  /** The SSH client's address as the host sees it ($SSH_CONNECTION), for "do not cut me off" checks. */
  sessionClientAddress?(opts?: SessionEndsOptions): Promise<string | undefined>;
  /** The TCP port the SSH session came in on, as the host sees it ($SSH_CONNECTION's last word). */
  sessionServerPort?(opts?: SessionEndsOptions): Promise<number | undefined>;
  /**
   * Runs one command over a new connection of its own (never the pooled one), closed after: the
   * proof that a new login works, which a session that survived a network change does not give.
   */
  runFresh?(req: RunRequest): Promise<RunResult>;
  /** How many commands may run at once on the pooled connection now (sessions sshd accepts). */
  sessionLimit?(): number;
  /**
   * Starts an operation whose host lock rides in remote shells (lock.ts): the connection stays
   * open until `release`, which frees the lock `token` took with a one-way frame (no token: none
   * was asked for). Undefined where commands run on sessions of their own.
   */
  shellLock?(): ShellLockHold | undefined;
}

// The script receives its paths as positional parameters, so no path is ever spliced into code.
// Parent directories get 0755 (a daemon that drops root must reach its files); the temp file is
// private until it has its final mode, and removed when anything fails (a full or read-only file
// system, a lost session's SIGHUP) so no `*.pulumi-tmp.*` stays behind.
const WRITE_FILE_SCRIPT =
  'set -e; umask 022; mkdir -p -- "$(dirname -- "$1")"; t="$1.pulumi-tmp.$$"; ' +
  "trap 'rm -f -- \"$t\"' EXIT; trap 'exit 129' HUP INT TERM PIPE; " +
  'umask 077; cat > "$t"; chmod "$2" "$t"; mv -f -- "$t" "$1"';

/** Returns the file's content, or undefined when it does not exist. */
export async function readFile(host: Host, path: string): Promise<string | undefined> {
  const r = await host.run({
    argv: ["sh", "-c", 'if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi', "sh", path],
    okExitCodes: [0, 3],
  });
  return r.exitCode === 3 ? undefined : r.stdout;
}

/** Writes a file atomically (temp file and rename in the same directory), creating its parent. */
export async function writeFile(
  host: Host,
  path: string,
  content: string,
  mode = 0o644,
): Promise<void> {
  await host.run({ argv: writeFileArgv(path, mode), stdin: content });
}

/** Returns the argv that writes its stdin to the path atomically with the mode. */
export function writeFileArgv(path: string, mode: number): string[] {
  return ["sh", "-c", WRITE_FILE_SCRIPT, "sh", path, mode.toString(8)];
}
