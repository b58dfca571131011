import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClientChannel } from "ssh2";
import {
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
import { dialWithRetry, type LiveConnection } from "./dial";
import type { Host, RunRequest, RunResult } from "./host";
import { quoteArgv } from "./quote";
import {
  buildRemoteCommand,
  fixedSudoMode,
  newSudoMarks,
  stdinFeedFor,
  SUDO_PROBE_COMMAND,
  sudoModeFromProbe,
  type SudoMode,
} from "./sudo";

// One SshHost is one host (user@host:port via a proxy chain): one pooled connection, opened on
// demand and closed when idle, shared by every run.

/** A connection without channels for this long is closed, so the process can exit. */
export const IDLE_CLOSE_MS = 1000;

const CHANNEL_OPEN_RETRIES = 8;

const noStdin = (): StdinFeed => writeAllFeed([]);

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
  private clientAddress: Promise<string | undefined> | undefined;

  constructor(conn: Connection, proxy?: SshHost) {
    this.conn = conn;
    this.proxy = proxy;
    this.label = connectionLabel(conn);
  }

  /** Runs argv on the host; rejects with CommandError on an exit code not in okExitCodes. */
  async run(req: RunRequest): Promise<RunResult> {
    if (req.argv.length === 0) throw new Error(`${this.label}: run needs a non-empty argv`);
    // Runs that started before a failed dial share its error instead of dialing again.
    const epoch = this.dialFailures;
    const sudo = await this.resolveSudoMode(epoch);
    const stdin = req.stdin === undefined ? [] : [Buffer.from(req.stdin)];
    const marks = newSudoMarks();
    const feed = (): StdinFeed => stdinFeedFor(this.conn, sudo, stdin, marks);
    const shown = quoteArgv(req.shown ?? req.argv);
    const exit = await this.exec(
      buildRemoteCommand(req.argv, sudo, marks),
      feed,
      shown,
      epoch,
      req.signal,
    );
    if (exit.signal !== undefined) {
      throw new CommandSignalError(this.label, req.argv, exit.signal, exit);
    }
    const result: RunResult = {
      exitCode: exit.code ?? -1,
      stdout: exit.stdout,
      stderr: exit.stderr,
    };
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

  /** Runs one command over a new connection to the host (the proxy stays pooled), closed after. */
  async runFresh(req: RunRequest): Promise<RunResult> {
    const fresh = new SshHost(this.conn, this.proxy);
    try {
      return await fresh.run(req);
    } finally {
      await fresh.close();
    }
  }

  /** Returns the SSH client's address as the host sees it (first word of $SSH_CONNECTION). */
  sessionClientAddress(): Promise<string | undefined> {
    if (!this.clientAddress) {
      // Asked without sudo on purpose: sudo's env_reset drops SSH_CONNECTION. A fixed command.
      const command = 'printf %s "$SSH_CONNECTION"';
      const asked = this.exec(command, noStdin, command, this.dialFailures).then((exit) => {
        const first = exit.code === 0 ? exit.stdout.trim().split(/\s+/)[0] : undefined;
        return first && isIP(first) ? first : undefined;
      });
      this.clientAddress = asked;
      asked.catch(() => {
        if (this.clientAddress === asked) this.clientAddress = undefined;
      });
    }
    return this.clientAddress;
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

  // Runs one command line on a channel of the pooled connection.
  private async exec(
    command: string,
    feed: () => StdinFeed,
    shown: string,
    epoch: number,
    signal?: AbortSignal,
  ): Promise<Outcome> {
    this.cancelIdle();
    await this.channels.acquire();
    try {
      for (let attempt = 1; ; attempt++) {
        const live = await this.getLive(epoch);
        let running: Running;
        try {
          running = await openExec(live.client, command, feed());
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
            this.channels.release();
            await sleep(delay);
            await this.channels.acquire();
            continue;
          }
          throw new SshConnectionError(
            this.label,
            "channel",
            `${this.label}: could not open a session for ${shown}: ${reason}`,
          );
        }
        // An aborted command is killed and its session closed; it ends without an exit status.
        const stop = (): void => {
          running.channel.signal("KILL");
          running.channel.close();
        };
        if (signal?.aborted) stop();
        signal?.addEventListener("abort", stop, { once: true });
        const outcome = await running.outcome.finally(() =>
          signal?.removeEventListener("abort", stop),
        );
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
      }
    } finally {
      if (this.channels.release()) this.scheduleIdle();
    }
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

  private scheduleIdle(): void {
    if (this.channels.busy || this.forwards > 0) return;
    const live = this.live;
    if (!live || live.closed) return;
    this.cancelIdle();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.live !== live || this.channels.busy || this.forwards > 0) return;
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
