import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClientChannel } from "ssh2";
import {
  CommandDeadlineError,
  CommandError,
  CommandSignalError,
  reasonOf,
  SshConnectionError,
  StaleConnectionError,
} from "../errors";
import { logInfo, logWarn } from "../log";
import {
  ChannelLimit,
  openExec,
  openForwardChannel,
  writeAllFeed,
  type Outcome,
  type Running,
  type StdinFeed,
} from "./channels";
import { connectionLabel, type Connection } from "./connection";
import {
  dialWithRetry,
  KEEPALIVE_INTERVAL_MS,
  refuseServerForCommands,
  type LiveConnection,
} from "./dial";
import {
  DEFAULT_DEADLINE_MS,
  type Host,
  type RunRequest,
  type RunResult,
  type SessionEndsOptions,
  type ShellLockHold,
} from "./host";
import { lockReleaseArgv } from "./lock";
import { quoteArgv } from "./quote";
import { argvWithCachedScripts, argvWithCompactScripts } from "./script";
import {
  LOCK_REF,
  RemoteShell,
  remoteShellCommand,
  remoteShellRequest,
  remoteShellEnabled,
  ShellEndedError,
  type ShellHello,
} from "./remote-shell";
import {
  buildRemoteCommand,
  fixedSudoMode,
  newSudoMarks,
  shellSudo,
  stdinFeedFor,
  SUDO_PROBE_COMMAND,
  sudoModeFromProbe,
  type SudoMode,
} from "./sudo";

// One SshHost is one host (user@host:port via a proxy chain): one pooled connection, opened on
// demand and closed when idle, shared by every run.

/**
 * A connection without channels for this long is closed (with its idle shells). Long enough that
 * a pause between a host's steps does not cost a new login: the engine's steps on one host wait
 * for other hosts and providers, and on a slow machine a host that is done waits seconds for the
 * others (at 1 s, such a machine dialled each host again between the fleet's phases). No longer
 * than the keepalive interval, so an idle connection is reused only within 10 s of its last
 * traffic; after a longer silence the next operation dials afresh rather than trust a peer nobody
 * has heard from. The engine ends its plugins when a deployment is done, so no process waits on
 * this to exit.
 */
export const IDLE_CLOSE_MS = KEEPALIVE_INTERVAL_MS;

const CHANNEL_OPEN_RETRIES = 8;

/**
 * How long a session of its own may wait for a slot before an idle shell is closed for it: a
 * slot of a session just closed frees within this, so shells are not closed and restarted for it.
 */
const ROOM_WAIT_MS = 200;

/**
 * Sessions kept free while every session of a connection is a shell (mayStartShell): a session
 * of its own (a host lock's holder, a command that cannot run in a shell) opens without waiting
 * for a shell to close.
 */
const SESSIONS_KEPT_FREE = 2;

/** The server refused a shell past half the sessions (startShell): not an error for the request. */
class ExtraShellRefused extends Error {}

/** How long a remote shell may take to say hello (a sudo password round trip included). */
export const SHELL_HELLO_MS = 20_000;

// Node fires a timer of more than 2^31-1 ms at once: longer deadlines are this.
const MAX_TIMER_MS = 2 ** 31 - 1;

const noStdin = (): StdinFeed => writeAllFeed([]);

/** How an SshHost runs commands. */
export interface SshHostOptions {
  /** Run commands in long-lived remote shells (default: PULUMI_HYPERVISOR_SSH_SHELL, on). */
  readonly shell?: boolean;
}

// A remote shell on the pooled connection; it holds one channel slot for as long as it lives.
interface PooledShell {
  readonly shell: RemoteShell;
  readonly live: LiveConnection;
  readonly hello: ShellHello;
  /** Ends the loop cleanly: its stdin closes, it removes its directory and exits. */
  readonly end: () => void;
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error(String(r));
}

/** A Linux host reached over SSH; use hostFor() from ./pool rather than constructing one. */
export class SshHost implements Host {
  readonly label: string;
  private readonly conn: Connection;
  private readonly proxy: SshHost | undefined;
  private live: LiveConnection | undefined;
  private connecting: Promise<LiveConnection> | undefined;
  private dialFailures = 0;
  private lastDialError: Error | undefined;
  private readonly channels = new ChannelLimit();
  private forwards = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private sudoMode: Promise<SudoMode> | undefined;
  /** $SSH_CONNECTION of a session ("CLIENT CPORT SERVER SPORT"), asked once per connection. */
  private sessionEnds: Promise<string | undefined> | undefined;
  // it is asked and not known yet: operations that wait for it warm shells meanwhile
  private sessionEndsPending = false;
  /** "on" until a shell could not start here: then every command gets a session of its own. */
  private shellMode: "on" | "off";
  private readonly idleShells: PooledShell[] = [];
  /** Shells that said hello and still run, idle or busy: any of them can take a release. */
  private readonly liveShells = new Set<PooledShell>();
  private shellWaiters: Array<() => void> = [];
  /** Runs (and probes) in progress: the connection is idle when none is. */
  private inFlight = 0;
  /** Operations holding a host lock in this connection's shells: it stays open for them. */
  private lockHolds = 0;
  /** Shells started and not yet closed. */
  private shells = 0;
  /** Of those, the ones that have not said hello yet (nor failed). */
  private shellsStarting = 0;
  /** Of those, the ones past half the sessions, and of these, the ones whose session is not open. */
  private extrasStarting = 0;
  private extrasOpening = 0;
  private roomTimer: NodeJS.Timeout | undefined;
  /** A session of its own has waited too long: the next shell that finishes a request closes. */
  private closeNextShell = false;

  constructor(conn: Connection, proxy?: SshHost, opts: SshHostOptions = {}) {
    this.conn = conn;
    this.proxy = proxy;
    this.label = connectionLabel(conn);
    this.shellMode = (opts.shell ?? remoteShellEnabled()) ? "on" : "off";
  }

  /** Runs argv on the host; rejects with CommandError on an exit code not in okExitCodes. */
  async run(req: RunRequest): Promise<RunResult> {
    if (req.argv.length === 0) throw new Error(`${this.label}: run needs a non-empty argv`);
    // Runs that started before a failed dial share its error instead of dialing again.
    const epoch = this.dialFailures;
    if (this.shellMode === "on" && req.ownSession !== true) {
      const result = await this.runInShell(req, epoch);
      if (result !== undefined) return this.checked(req, result);
    }
    const sudo = await this.resolveSudoMode(epoch);
    const stdin = req.stdin === undefined ? [] : [Buffer.from(req.stdin)];
    const marks = newSudoMarks();
    const feed = (): StdinFeed => stdinFeedFor(this.conn, sudo, stdin, marks);
    const shown = quoteArgv(req.shown ?? req.argv);
    const deadlineMs = req.deadlineMs ?? DEFAULT_DEADLINE_MS;
    let timedOut = false;
    const command = buildRemoteCommand(argvWithCompactScripts(req.argv), sudo, marks);
    const exit = await this.exec(command, feed, shown, epoch, {
      signal: req.signal,
      deadlineMs,
      onDeadline: () => {
        timedOut = true;
      },
    });
    if (timedOut) {
      throw new CommandDeadlineError(this.label, req.shown ?? req.argv, deadlineMs, exit);
    }
    if (exit.signal !== undefined) {
      throw new CommandSignalError(this.label, req.argv, exit.signal, exit);
    }
    return this.checked(req, {
      exitCode: exit.code ?? -1,
      stdout: exit.stdout,
      stderr: exit.stderr,
    });
  }

  private checked(req: RunRequest, result: RunResult): RunResult {
    const ok = req.okExitCodes ?? [0];
    if (!ok.includes(result.exitCode) && req.reject !== false) {
      throw new CommandError(this.label, req.argv, result);
    }
    return result;
  }

  /** Returns how many commands may run at once on the pooled connection now. */
  sessionLimit(): number {
    return this.channels.current;
  }

  /**
   * Starts an operation whose host lock rides in remote shells (lock-take.sh); undefined when
   * commands run on sessions of their own. Until `release`, the connection is not closed as idle:
   * the lock's holder ends with it. `release` frees the lock with a one-way frame on any shell of
   * the connection, idle or busy, so no round trip waits for it.
   */
  shellLock(): ShellLockHold | undefined {
    if (this.shellMode !== "on") return undefined;
    this.lockHolds++;
    this.cancelIdle();
    let released = false;
    return {
      release: (lock) => {
        if (released) return;
        released = true;
        if (lock !== undefined) this.releaseHostLock(lock);
        this.lockHolds--;
        this.scheduleIdle();
      },
    };
  }

  private releaseHostLock(lock: string): void {
    if (!LOCK_REF.test(lock)) throw new Error(`invalid host lock reference ${lock}`);
    const frame = Buffer.from(`U ${lock}\n`, "ascii");
    for (const pooled of [...this.idleShells, ...this.liveShells]) {
      if (pooled.shell.alive && !pooled.live.closed && pooled.live === this.live) {
        pooled.shell.notify(frame);
        return;
      }
    }
    // No shell is left on this connection (closed to make room): a command does it. With the
    // connection gone, so is the holder, and there is nothing to release.
    if (!this.live || this.live.closed) return;
    void this.run({ argv: lockReleaseArgv(lock), reject: false }).catch(() => undefined);
  }

  /** Runs one command over a new connection to the host (the proxy stays pooled), closed after. */
  async runFresh(req: RunRequest): Promise<RunResult> {
    // one command on a new login: a plain session, a shell would only add its start-up
    const fresh = new SshHost(this.conn, this.proxy, { shell: false });
    try {
      return await fresh.run(req);
    } finally {
      await fresh.close();
    }
  }

  /** Returns the SSH client's address as the host sees it (first word of $SSH_CONNECTION). */
  async sessionClientAddress(opts?: SessionEndsOptions): Promise<string | undefined> {
    const first = (await this.sessionConnection(opts))?.trim().split(/\s+/)[0];
    return first && isIP(first) ? first : undefined;
  }

  /** Returns the port the session came in on, as the host sees it (last word of $SSH_CONNECTION). */
  async sessionServerPort(opts?: SessionEndsOptions): Promise<number | undefined> {
    return sessionPortOf(await this.sessionConnection(opts));
  }

  private sessionConnection(opts?: SessionEndsOptions): Promise<string | undefined> {
    if (!this.sessionEnds) {
      const asked = this.askSessionConnection();
      this.sessionEnds = asked;
      this.sessionEndsPending = true;
      const settled = (): void => {
        if (this.sessionEnds === asked) this.sessionEndsPending = false;
      };
      asked.then(settled, () => {
        settled();
        if (this.sessionEnds === asked) this.sessionEnds = undefined;
      });
    } else if (this.sessionEndsPending && opts?.ownCommand !== false) {
      this.warmShell();
    }
    return this.sessionEnds;
  }

  // An operation that waits for the session's ends while the first shell starts (its hello has
  // them) starts the shell it will run in meanwhile: a start costs round trips (channel, exec,
  // hello), and these overlap the first one's instead of following it. Not one whose look rides
  // in a shared batch (a refresh's, a preview's): those need one shell between them, not a shell
  // each (ten bridges previewed at once on a new connection started four for their one command).
  private warmShell(): void {
    if (this.shellMode !== "on" || this.idleShells.length > 0 || !this.mayStartShell()) return;
    this.inFlight++;
    this.cancelIdle();
    this.startShell(this.dialFailures, "the remote shell")
      .then(
        (pooled) => {
          if (pooled) this.giveBack(pooled);
        },
        // the operation's own command meets the same failure and reports it
        () => undefined,
      )
      .finally(() => {
        this.inFlight--;
        this.scheduleIdle();
      });
  }

  /** Opens a tunnel from this host to host:port, for the next hop of a proxy chain. */
  async openForward(host: string, port: number): Promise<ClientChannel> {
    this.forwards++;
    this.cancelIdle();
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      this.forwards--;
      this.scheduleIdle();
    };
    try {
      const live = await this.getLive(this.dialFailures);
      return await openForwardChannel(live.client, host, port, done);
    } catch (err) {
      done();
      throw err;
    }
  }

  /** Closes the connection now (a later run reconnects); resolves when it is closed. */
  async close(): Promise<void> {
    this.cancelIdle();
    const live = this.live;
    if (!live) return;
    this.dropLive(live);
    live.client.end();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2000);
      timer.unref();
    });
    await Promise.race([live.endedPromise, timeout]);
    clearTimeout(timer);
    if (!live.ended) live.client.destroy();
  }

  private resolveSudoMode(epoch: number): Promise<SudoMode> {
    const fixed = fixedSudoMode(this.conn);
    if (fixed !== undefined) return Promise.resolve(fixed);
    if (!this.sudoMode) {
      // With NOPASSWD sudo never reads stdin, so a password sent anyway would become the
      // command's input: probe once and send the password only when sudo asks for one.
      const probe = this.exec(SUDO_PROBE_COMMAND, noStdin, SUDO_PROBE_COMMAND, epoch).then((exit) =>
        sudoModeFromProbe(this.label, exit.code),
      );
      this.sudoMode = probe;
      probe.catch(() => {
        if (this.sudoMode === probe) this.sudoMode = undefined;
      });
    }
    return this.sudoMode;
  }

  // Runs one command line on a channel of its own on the pooled connection.
  private async exec(
    command: string,
    feed: () => StdinFeed,
    shown: string,
    epoch: number,
    opts: { signal?: AbortSignal | undefined; deadlineMs?: number; onDeadline?: () => void } = {},
  ): Promise<Outcome> {
    const { signal } = opts;
    this.inFlight++;
    this.cancelIdle();
    const slot = this.channels.acquire();
    // idle shells hold slots too: one of them makes room if this waits long
    if (this.channels.waiting) this.makeRoom();
    await slot;
    try {
      const { running, live } = await this.openChannel(command, feed, shown, epoch);
      // An aborted command is killed and its session closed; it ends without an exit status.
      const stop = (): void => {
        running.channel.signal("KILL");
        running.channel.close();
      };
      if (signal?.aborted) stop();
      signal?.addEventListener("abort", stop, { once: true });
      let expired = false;
      const deadline =
        opts.deadlineMs === undefined
          ? undefined
          : setTimeout(
              () => {
                expired = true;
                opts.onDeadline?.();
                stop();
              },
              Math.min(opts.deadlineMs, MAX_TIMER_MS),
            );
      const outcome = await running.outcome.finally(() => {
        signal?.removeEventListener("abort", stop);
        clearTimeout(deadline);
      });
      // killed at its deadline: the caller says so, with what it printed until then
      if (expired) return outcome;
      if (outcome.code === undefined && outcome.signal === undefined) {
        if (live.closed) throw this.lostError(live, shown);
        const why = outcome.streamError ? `: ${outcome.streamError}` : "";
        throw new SshConnectionError(
          this.label,
          "lost",
          `${this.label}: ${shown} ended without an exit status${why}`,
        );
      }
      return outcome;
    } finally {
      this.inFlight--;
      this.releaseSlot();
    }
  }

  // Opens a channel running `command`; the caller holds a slot (held again when this returns).
  private async openChannel(
    command: string,
    feed: () => StdinFeed,
    shown: string,
    epoch: number,
    onStdout?: (chunk: Buffer) => void,
    refusalEnds = false,
  ): Promise<{ running: Running; live: LiveConnection }> {
    for (let attempt = 1; ; attempt++) {
      const live = await this.getLive(epoch);
      refuseServerForCommands(live, this.label);
      try {
        return { running: await openExec(live.client, command, feed(), onStdout), live };
      } catch (err) {
        if (err instanceof StaleConnectionError && attempt === 1) {
          this.dropLive(live);
          continue;
        }
        if (live.closed) throw this.lostError(live, shown);
        // ssh2 says "(SSH) Channel open failure: <description>"; sshd's description may be empty
        const reason = reasonOf(err)
          .replace(/^\(ssh\) /i, "")
          .replace(/[:\s]+$/, "")
          .toLowerCase();
        if (reason.startsWith("channel open failure") && refusalEnds) {
          // the other shells past half still opening were not accepted either
          const lowered = this.channels.refused(this.extrasOpening);
          if (lowered !== undefined) {
            logInfo(`${this.label}: at most ${lowered} sessions at once from now on`);
          }
          throw new ExtraShellRefused();
        }
        if (reason.startsWith("channel open failure") && attempt <= CHANNEL_OPEN_RETRIES) {
          const delay = Math.min(100 * 2 ** (attempt - 1), 2000);
          logWarn(
            `${this.label}: the server refused a new session (${reason}); ` +
              `retry ${attempt}/${CHANNEL_OPEN_RETRIES} in ${delay / 1000}s`,
          );
          const lowered = this.channels.refused();
          if (lowered !== undefined) {
            logInfo(`${this.label}: at most ${lowered} sessions at once from now on`);
          }
          // The retry waits for a slot under the learned limit, as every other command does.
          this.releaseSlot();
          await sleep(delay);
          const slot = this.channels.acquire();
          if (this.channels.waiting) this.makeRoom();
          await slot;
          continue;
        }
        throw new SshConnectionError(
          this.label,
          "channel",
          `${this.label}: could not open a session for ${shown}: ${reason}`,
        );
      }
    }
  }

  // Runs the request in a pooled remote shell; undefined when shells do not work on this host.
  private async runInShell(req: RunRequest, epoch: number): Promise<RunResult | undefined> {
    const shown = quoteArgv(req.shown ?? req.argv);
    // script bodies go once per shell: the request refers to them in its cache
    const cached = argvWithCachedScripts(req.argv);
    const command = remoteShellRequest(cached.argv);
    const stdin = req.stdin === undefined ? Buffer.alloc(0) : Buffer.from(req.stdin);
    const deadlineMs = req.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.inFlight++;
    this.cancelIdle();
    try {
      // A shell that ended before it read the request never ran it: another one may.
      for (let attempt = 1; ; attempt++) {
        if (req.signal?.aborted) throw abortError(req.signal);
        const pooled = await this.takeShell(epoch, shown);
        if (!pooled) return undefined;
        const { shell, live } = pooled;
        if (req.signal?.aborted) {
          this.giveBack(pooled);
          throw abortError(req.signal);
        }
        let timedOut = false;
        const kill = (): void => shell.kill();
        const deadline = setTimeout(
          () => {
            timedOut = true;
            kill();
          },
          Math.min(deadlineMs, MAX_TIMER_MS),
        );
        req.signal?.addEventListener("abort", kill, { once: true });
        try {
          const reply = await shell.request(command, stdin, cached.scripts, req.releasesHostLock);
          const output = {
            stdout: reply.stdout.toString("utf8"),
            stderr: reply.stderr.toString("utf8"),
          };
          if (timedOut) {
            throw new CommandDeadlineError(this.label, req.shown ?? req.argv, deadlineMs, output);
          }
          if (req.signal?.aborted) throw abortError(req.signal);
          const released = req.releasesHostLock !== undefined ? { hostLockReleased: true } : {};
          return { exitCode: reply.code, ...output, ...released };
        } catch (e) {
          if (!(e instanceof ShellEndedError)) throw e;
          if (timedOut) {
            const none = { stdout: "", stderr: "" };
            throw new CommandDeadlineError(this.label, req.shown ?? req.argv, deadlineMs, none);
          }
          if (req.signal?.aborted) throw abortError(req.signal);
          if (!e.started && attempt < 3) continue;
          if (live.closed) throw this.lostError(live, shown);
          throw new SshConnectionError(
            this.label,
            "lost",
            `${this.label}: ${shown} ended without a reply: the remote shell ${e.message}`,
          );
        } finally {
          clearTimeout(deadline);
          req.signal?.removeEventListener("abort", kill);
          this.giveBack(pooled);
        }
      }
    } finally {
      this.inFlight--;
      this.scheduleIdle();
    }
  }

  // Returns an idle shell, or a new one when a slot is free; waits otherwise. Undefined: shells
  // do not start on this host (the caller runs the command on a session of its own).
  private async takeShell(epoch: number, shown: string): Promise<PooledShell | undefined> {
    for (;;) {
      if (this.shellMode !== "on") return undefined;
      const idle = this.idleShells.pop();
      if (idle) {
        if (idle.shell.alive && !idle.live.closed) return idle;
        continue;
      }
      if (this.mayStartShell()) {
        try {
          return await this.startShell(epoch, shown);
        } catch (e) {
          // the server has fewer sessions than asked: the request waits for a shell it has
          if (!(e instanceof ExtraShellRefused)) throw e;
          continue;
        }
      }
      await new Promise<void>((resolve) => this.shellWaiters.push(resolve));
    }
  }

  // Takes a slot for a new shell when shells keep below half the sessions (rounded up): the other
  // half stays for sessions of their own (the host lock's holders where a shell did not start,
  // lock.ts), so those never wait for a shell to close and shells are not closed and started
  // again. While every session of the connection is a shell, none of those is in use: shells may
  // then take all but two, since a host with many operations at once (a hypervisor's hundred taps)
  // is bound by its shells' round trips.
  private mayStartShell(): boolean {
    const half = this.halfTheSessions();
    const allShells = this.channels.held === this.shells && !this.channels.waiting;
    // those past half once the others said hello and are all busy (a request waits): a refusal
    // then tells what the server allows
    const pastHalf = allShells && this.shellsStarting === this.extrasStarting;
    const most = pastHalf ? Math.max(half, this.channels.current - SESSIONS_KEPT_FREE) : half;
    return this.shells < most && this.channels.tryAcquire();
  }

  // The shells that may start whatever else the connection has open (rounded up).
  private halfTheSessions(): number {
    return Math.ceil(this.channels.current / 2);
  }

  // Starts a shell in the slot the caller took; the slot goes back when the shell's session closes.
  private async startShell(epoch: number, shown: string): Promise<PooledShell | undefined> {
    // a shell past half the sessions is one the connection can do without: a server that
    // refuses it (a MaxSessions below 8) lowers the limit, and the request waits for another
    const extra = this.shells >= this.halfTheSessions();
    this.shellsStarting++;
    if (extra) this.extrasStarting++;
    try {
      return await this.openShell(epoch, shown, extra);
    } finally {
      this.shellsStarting--;
      if (extra) this.extrasStarting--;
    }
  }

  private async openShell(
    epoch: number,
    shown: string,
    extra: boolean,
  ): Promise<PooledShell | undefined> {
    const sudo = shellSudo(this.conn, newSudoMarks());
    this.shells++;
    // the channel opens after the shell exists: its stdout goes to the shell from the first byte
    const opening: { running?: Running } = {};
    const shell = new RemoteShell({
      write: (chunk) => {
        opening.running?.channel.write(chunk);
      },
      destroy: () => {
        opening.running?.channel.signal("KILL");
        opening.running?.channel.close();
      },
    });
    let opened: { running: Running; live: LiveConnection };
    if (extra) this.extrasOpening++;
    try {
      opened = await this.openChannel(
        remoteShellCommand(sudo.prefix),
        () => sudo.feed,
        shown,
        epoch,
        (chunk) => shell.push(chunk),
        extra,
      );
    } catch (e) {
      this.shells--;
      this.releaseSlot();
      throw e;
    } finally {
      if (extra) this.extrasOpening--;
    }
    const { running, live } = opened;
    opening.running = running;
    const outcome = running.outcome;
    void outcome.then((o) => {
      const how =
        o.signal !== undefined
          ? `was killed by ${o.signal}`
          : o.code !== undefined
            ? `exited ${o.code}`
            : "session closed";
      shell.ended(how);
      const i = this.idleShells.findIndex((p) => p.shell === shell);
      if (i >= 0) this.idleShells.splice(i, 1);
      for (const p of this.liveShells) if (p.shell === shell) this.liveShells.delete(p);
      this.shells--;
      this.releaseSlot();
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no hello within ${SHELL_HELLO_MS / 1000} s`)),
        SHELL_HELLO_MS,
      );
    });
    try {
      const hello = await Promise.race([shell.hello, late]);
      const pooled: PooledShell = {
        shell,
        live,
        hello,
        end: () => {
          running.channel.end();
        },
      };
      if (shell.alive) this.liveShells.add(pooled);
      return pooled;
    } catch (e) {
      shell.destroy();
      const o = await outcome;
      if (live.closed) throw this.lostError(live, shown);
      if (this.shellMode === "on") {
        this.shellMode = "off";
        // sudo's refusal too: the plain sessions' sudo may still allow the commands themselves
        const said = sudo.refused()
          ? "sudo refused the password"
          : o.stderr.trim().split("\n")[0]?.slice(0, 200);
        logInfo(
          `${this.label}: the remote shell did not start (${reasonOf(e)}${said ? `: ${said}` : ""}); ` +
            "each command runs on a session of its own",
        );
        this.wakeShellWaiters();
      }
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  // After a request: the shell serves the next one, or makes room for a session that waits.
  private giveBack(pooled: PooledShell): void {
    if (!pooled.shell.alive || pooled.live.closed) return;
    if (pooled.shell.busy) {
      pooled.shell.destroy(); // still winding down a killed command: its close frees the slot
      return;
    }
    const makesRoom = this.closeNextShell && this.channels.waiting;
    // over the limit, not counting shells that are still opening: a refused one frees its slot
    const over = this.channels.held - this.extrasOpening > this.channels.current;
    if (makesRoom || over || this.live !== pooled.live) {
      if (makesRoom) this.closeNextShell = false;
      pooled.end();
      return;
    }
    this.idleShells.push(pooled);
    this.wakeShellWaiters();
  }

  // While a session of its own waits for a slot, every ROOM_WAIT_MS one shell closes for it: an
  // idle one at once, else the next that finishes its request.
  private makeRoom(): void {
    if (this.roomTimer) return;
    this.roomTimer = setTimeout(() => {
      this.roomTimer = undefined;
      if (!this.channels.waiting) {
        this.closeNextShell = false;
        return;
      }
      const idle = this.idleShells.shift();
      if (idle) idle.end();
      else this.closeNextShell = true;
      this.makeRoom();
    }, ROOM_WAIT_MS);
  }

  private wakeShellWaiters(): void {
    const waiting = this.shellWaiters;
    this.shellWaiters = [];
    for (const wake of waiting) wake();
  }

  private releaseSlot(): void {
    this.channels.release();
    this.wakeShellWaiters();
    this.scheduleIdle();
  }

  // $SSH_CONNECTION of a session: a shell's hello has it; else one plain session asks, without
  // sudo on purpose (sudo's env_reset drops it).
  private async askSessionConnection(): Promise<string | undefined> {
    const epoch = this.dialFailures;
    if (this.shellMode === "on") {
      this.inFlight++;
      this.cancelIdle();
      try {
        const shown = "the remote shell";
        const pooled = await this.takeShell(epoch, shown);
        if (pooled) {
          this.giveBack(pooled);
          return pooled.hello.sshConnection;
        }
      } finally {
        this.inFlight--;
        this.scheduleIdle();
      }
    }
    const command = 'printf %s "$SSH_CONNECTION"';
    const exit = await this.exec(command, noStdin, command, epoch);
    return exit.code === 0 ? exit.stdout : undefined;
  }

  private lostError(live: LiveConnection, shown: string): SshConnectionError {
    const why = live.lostReason ? `: ${live.lostReason}` : "";
    return new SshConnectionError(
      this.label,
      "lost",
      `${this.label}: connection lost while running ${shown}${why}`,
    );
  }

  private cancelIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  // Idle: no run in progress and no tunnel open (idle shells do not count; they close with it).
  private get busy(): boolean {
    return this.inFlight > 0 || this.forwards > 0 || this.lockHolds > 0 || this.channels.waiting;
  }

  private scheduleIdle(): void {
    if (this.busy) return;
    const live = this.live;
    if (!live || live.closed) return;
    this.cancelIdle();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.live !== live || this.busy) return;
      this.dropLive(live);
      live.client.end();
    }, IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  private dropLive(live: LiveConnection): void {
    live.closed = true;
    if (this.live === live) this.live = undefined;
  }

  private getLive(epoch: number): Promise<LiveConnection> {
    if (this.live && !this.live.closed) return Promise.resolve(this.live);
    if (!this.connecting) {
      if (this.dialFailures > epoch && this.lastDialError)
        return Promise.reject(this.lastDialError);
      const dialing = dialWithRetry({
        conn: this.conn,
        label: this.label,
        proxy: this.proxy,
        onClosed: (live) => this.dropLive(live),
      }).then(
        (live) => {
          this.connecting = undefined;
          if (!live.closed) this.live = live;
          return live;
        },
        (err: unknown) => {
          this.connecting = undefined;
          this.dialFailures++;
          this.lastDialError = err instanceof Error ? err : new Error(String(err));
          throw err;
        },
      );
      this.connecting = dialing;
    }
    return this.connecting;
  }
}

/** Returns the server's port of $SSH_CONNECTION ("CLIENT CPORT SERVER SPORT"), if it has one. */
export function sessionPortOf(connection: string | undefined): number | undefined {
  const words = connection?.trim().split(/\s+/) ?? [];
  const port = words.length === 4 ? words[3] : undefined;
  if (port === undefined || !/^[0-9]{1,5}$/.test(port)) return undefined;
  const n = Number(port);
  return n >= 1 && n <= 65535 ? n : undefined;
}
