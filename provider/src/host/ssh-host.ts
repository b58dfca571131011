import { createConnection, isIP } from "node:net";
import { readFile as readLocalFile } from "node:fs/promises";
import { constants as osConstants, homedir } from "node:os";
import { join } from "node:path";
import { Client, type ClientChannel, type ConnectConfig, type ServerHostKeyAlgorithm } from "ssh2";
import { logInfo, logWarn } from "../log";
import { connectionLabel, type Connection } from "./connection";
import { CommandError, type Host, type RunRequest, type RunResult } from "./host";
import {
  checkKnownHosts,
  checkPinnedHostKey,
  describeKey,
  hostKeyAlgorithmsFor,
  knownHostKeyTypes,
  parseHostKeyPin,
  type HostKeyVerdict,
} from "./host-keys";
import { quoteArgv } from "./quote";

// The only file that imports ssh2. One SshHost is one host (user@host:port via a proxy chain):
// one pooled connection, opened on demand and closed when idle, shared by every run.

/** Channels used at once on one connection; sshd's default MaxSessions is 10. */
export const MAX_CHANNELS_PER_CONNECTION = 8;
/** A connection without channels for this long is closed, so the process can exit. */
export const IDLE_CLOSE_MS = 1000;
/** SSH-level keepalive; three unanswered ones drop the connection. */
export const KEEPALIVE_INTERVAL_MS = 10_000;

const CHANNEL_OPEN_RETRIES = 8;
const DIAL_BACKOFF_FIRST_MS = 500;
const DIAL_BACKOFF_MAX_MS = 5000;
// Exits 0 only when sudo needs no password at all (-k ignores cached credentials).
const SUDO_PROBE = ["sudo", "-n", "-k", "true"] as const;

/** How a command is wrapped on the host. */
export type SudoMode = "none" | "nopasswd" | "password";

/** Why a host could not be used: the key was refused, login failed, dial gave up, or it dropped. */
export type SshConnectionErrorKind = "host-key" | "auth" | "dial" | "lost" | "channel" | "config";

/** A failure to reach or keep a host; the message names the host and never a secret. */
export class SshConnectionError extends Error {
  readonly host: string;
  readonly kind: SshConnectionErrorKind;

  constructor(host: string, kind: SshConnectionErrorKind, message: string) {
    super(message);
    this.name = "SshConnectionError";
    this.host = host;
    this.kind = kind;
  }
}

/** A remote command killed by a signal; exitCode is 128 + the signal number, as a shell reports. */
export class CommandSignalError extends CommandError {
  readonly signal: string;

  constructor(
    host: string,
    argv: readonly string[],
    signal: string,
    output: Omit<RunResult, "exitCode">,
  ) {
    const signals = osConstants.signals as Readonly<Record<string, number | undefined>>;
    super(host, argv, { exitCode: 128 + (signals[signal] ?? 0), ...output });
    this.name = "CommandSignalError";
    this.signal = signal;
    const said = (output.stderr.trim() || output.stdout.trim() || "no output").slice(0, 2000);
    this.message = `${host}: ${this.command} killed by ${signal}: ${said}`;
  }
}

const stats = { connectionsOpened: 0, channelsOpened: 0 };

/** Returns how many SSH connections (hops included) and channels this process has opened. */
export function sshStats(): { connectionsOpened: number; channelsOpened: number } {
  return { ...stats };
}

/** Returns the command line sent for argv: `env LC_ALL=C` for stable output, in sudo as asked. */
export function buildRemoteCommand(argv: readonly string[], sudo: SudoMode): string {
  const command = ["env", "LC_ALL=C", ...argv];
  switch (sudo) {
    case "none":
      return quoteArgv(command);
    case "nopasswd":
      return quoteArgv(["sudo", "-n", "--", ...command]);
    case "password":
      // -p '' keeps the prompt out of stderr; -k makes sudo read the password line even when it
      // has cached credentials, so that line never reaches the command's stdin
      return quoteArgv(["sudo", "-S", "-p", "", "-k", "--", ...command]);
  }
}

interface Live {
  readonly client: Client;
  /** No longer used for new channels (idle-closed, dropped or closing). */
  closed: boolean;
  /** The socket has closed. */
  ended: boolean;
  lostReason: string | undefined;
  readonly endedPromise: Promise<void>;
}

interface HostKeyCheck {
  readonly verify: (blob: Buffer) => HostKeyVerdict;
  readonly preferTypes: readonly string[];
}

// A dial failure worth another attempt (refused, timed out, reset, tunnel not open).
class RetryableDialError extends Error {}
// The proxy's connection is up but it could not open a tunnel to the next hop.
class TunnelError extends Error {}
// exec threw synchronously: nothing was sent on this connection.
class StaleConnectionError extends Error {}

function messageOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function levelOf(err: unknown): string | undefined {
  const level = (err as { level?: unknown } | null)?.level;
  return typeof level === "string" ? level : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

interface Outcome {
  readonly code: number | undefined;
  readonly signal: string | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly streamError: string | undefined;
}

interface Running {
  readonly channel: ClientChannel;
  /** Settles when the channel closes; never rejects. */
  readonly outcome: Promise<Outcome>;
}

// Listens before returning: ssh2 can parse the exec reply, the output, the exit status and the
// close from one read, so a listener attached after an await would miss the exit status.
function watchChannel(channel: ClientChannel): Running {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let code: number | undefined;
  let signal: string | undefined;
  let streamError: string | undefined;
  channel.on("data", (chunk: Buffer) => out.push(chunk));
  channel.stderr.on("data", (chunk: Buffer) => err.push(chunk));
  channel.on("exit", (status: number | null, name?: string) => {
    if (typeof status === "number") code = status;
    else if (name) signal = name;
  });
  channel.on("error", (e: unknown) => {
    streamError ??= messageOf(e);
  });
  channel.stderr.on("error", (e: unknown) => {
    streamError ??= messageOf(e);
  });
  const outcome = new Promise<Outcome>((resolve) => {
    channel.once("close", () =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        streamError,
      }),
    );
  });
  return { channel, outcome };
}

function openExec(client: Client, command: string): Promise<Running> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, channel) => (err ? reject(err) : resolve(watchChannel(channel))));
    } catch (err) {
      reject(new StaleConnectionError(messageOf(err)));
    }
  });
}

/** A Linux host reached over SSH; use hostFor() from ./pool rather than constructing one. */
export class SshHost implements Host {
  readonly label: string;
  private readonly conn: Connection;
  private readonly proxy: SshHost | undefined;
  private live: Live | undefined;
  private connecting: Promise<Live> | undefined;
  private dialFailures = 0;
  private lastDialError: Error | undefined;
  private active = 0;
  private forwards = 0;
  private readonly waiters: Array<() => void> = [];
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
    const stdin: Buffer[] = [];
    if (sudo === "password" && typeof this.conn.sudo === "object") {
      stdin.push(Buffer.from(`${this.conn.sudo.password}\n`, "utf8"));
    }
    if (req.stdin !== undefined) stdin.push(Buffer.from(req.stdin));
    const shown = quoteArgv(req.argv);
    const exit = await this.exec(
      buildRemoteCommand(req.argv, sudo),
      stdin,
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

  /** Returns the SSH client's address as the host sees it (first word of $SSH_CONNECTION). */
  sessionClientAddress(): Promise<string | undefined> {
    if (!this.clientAddress) {
      // Asked without sudo on purpose: sudo's env_reset drops SSH_CONNECTION. A fixed command.
      const command = 'printf %s "$SSH_CONNECTION"';
      const asked = this.exec(command, [], command, this.dialFailures).then((exit) => {
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
      return await new Promise<ClientChannel>((resolve, reject) => {
        try {
          live.client.forwardOut("127.0.0.1", 0, host, port, (err, channel) => {
            if (err) {
              reject(new TunnelError(messageOf(err)));
              return;
            }
            stats.channelsOpened++;
            // attached at once, like watchChannel: the tunnel may close within the same read
            channel.once("close", done);
            resolve(channel);
          });
        } catch (err) {
          reject(new TunnelError(messageOf(err)));
        }
      });
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
    const sudo = this.conn.sudo;
    if (sudo === false) return Promise.resolve("none");
    if (sudo === true) return Promise.resolve("nopasswd");
    if (!this.sudoMode) {
      // With NOPASSWD sudo never reads stdin, so a password sent anyway would become the
      // command's input: probe once and send the password only when sudo asks for one.
      const probe = this.exec(quoteArgv(SUDO_PROBE), [], quoteArgv(SUDO_PROBE), epoch).then(
        (exit): SudoMode => {
          if (exit.code !== 0) return "password";
          logInfo(
            `${this.label}: sudo needs no password here; connection.sudo.password is not sent`,
          );
          return "nopasswd";
        },
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
    stdin: readonly Buffer[],
    shown: string,
    epoch: number,
    signal?: AbortSignal,
  ): Promise<Outcome> {
    await this.acquire();
    try {
      for (let attempt = 1; ; attempt++) {
        const live = await this.getLive(epoch);
        let running: Running;
        try {
          running = await openExec(live.client, command);
        } catch (err) {
          if (err instanceof StaleConnectionError && attempt === 1) {
            this.dropLive(live);
            continue;
          }
          if (live.closed) throw this.lostError(live, shown);
          // ssh2 says "(SSH) Channel open failure: <description>"; sshd's description may be empty
          const reason = messageOf(err)
            .replace(/^\(ssh\) /i, "")
            .replace(/[:\s]+$/, "")
            .toLowerCase();
          if (reason.startsWith("channel open failure") && attempt <= CHANNEL_OPEN_RETRIES) {
            const delay = Math.min(100 * 2 ** (attempt - 1), 2000);
            logWarn(
              `${this.label}: the server refused a new session (${reason}); ` +
                `retry ${attempt}/${CHANNEL_OPEN_RETRIES} in ${delay / 1000}s`,
            );
            await sleep(delay);
            continue;
          }
          throw new SshConnectionError(
            this.label,
            "channel",
            `${this.label}: could not open a session for ${shown}: ${reason}`,
          );
        }
        stats.channelsOpened++;
        for (const chunk of stdin) running.channel.write(chunk);
        running.channel.end();
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
      this.release();
    }
  }

  private lostError(live: Live, shown: string): SshConnectionError {
    const why = live.lostReason ? `: ${live.lostReason}` : "";
    return new SshConnectionError(
      this.label,
      "lost",
      `${this.label}: connection lost while running ${shown}${why}`,
    );
  }

  private acquire(): Promise<void> {
    this.cancelIdle();
    if (this.active < MAX_CHANNELS_PER_CONNECTION) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) {
      next(); // the slot passes to the oldest waiter
      return;
    }
    this.active--;
    this.scheduleIdle();
  }

  private cancelIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private scheduleIdle(): void {
    if (this.active > 0 || this.forwards > 0 || this.waiters.length > 0) return;
    const live = this.live;
    if (!live || live.closed) return;
    this.cancelIdle();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.live !== live || this.active > 0 || this.forwards > 0) return;
      this.dropLive(live);
      live.client.end();
    }, IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  private dropLive(live: Live): void {
    live.closed = true;
    if (this.live === live) this.live = undefined;
  }

  private getLive(epoch: number): Promise<Live> {
    if (this.live && !this.live.closed) return Promise.resolve(this.live);
    if (!this.connecting) {
      if (this.dialFailures > epoch && this.lastDialError)
        return Promise.reject(this.lastDialError);
      const dialing: Promise<Live> = this.dial().then(
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

  // Dials up to dialErrorLimit times; a refused host key or failed login ends it at once.
  private async dial(): Promise<Live> {
    const limit = this.conn.dialErrorLimit;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.dialOnce();
      } catch (err) {
        if (!(err instanceof RetryableDialError)) throw err;
        if (attempt >= limit) {
          throw new SshConnectionError(
            this.label,
            "dial",
            `${this.label}: could not connect after ${attempt} attempt${attempt === 1 ? "" : "s"}: ${err.message}`,
          );
        }
        const delay = Math.min(DIAL_BACKOFF_FIRST_MS * 2 ** (attempt - 1), DIAL_BACKOFF_MAX_MS);
        logWarn(
          `${this.label}: connect attempt ${attempt}/${limit} failed: ${err.message}; retrying in ${delay / 1000}s`,
        );
        await sleep(delay);
      }
    }
  }

  private async dialOnce(): Promise<Live> {
    const check = await this.hostKeyCheck();
    const { host, port, user } = this.conn;
    // Our own TCP socket, so Nagle can be turned off: with it on, every command's small
    // packets waited on the peer's delayed ACK, about 40 ms per remote command.
    const sock = this.proxy
      ? await this.openTunnel(this.proxy)
      : createConnection({ host, port }).setNoDelay(true);
    const label = this.label;
    const methods = this.authMethods();
    const client = new Client();
    let refused: string | undefined;
    const notes: string[] = [];
    let settled = false;
    let markEnded = (): void => {};
    const live: Live = {
      client,
      closed: false,
      ended: false,
      lostReason: undefined,
      endedPromise: new Promise<void>((resolve) => {
        markEnded = resolve;
      }),
    };

    const config: ConnectConfig = {
      host,
      port,
      username: user,
      readyTimeout: this.conn.perDialTimeout * 1000,
      keepaliveInterval: KEEPALIVE_INTERVAL_MS,
      authHandler: methods.map((m) => m.method),
      hostVerifier: (key: Buffer): boolean => {
        const verdict = check.verify(key);
        if (verdict.ok) return true;
        refused = verdict.detail;
        return false;
      },
    };
    config.sock = sock;
    for (const m of methods) Object.assign(config, m.config);
    const algorithms = hostKeyAlgorithmsFor(check.preferTypes) as ServerHostKeyAlgorithm[];
    if (algorithms.length > 0) {
      // remove then prepend moves the expected algorithms to the front of ssh2's default list
      config.algorithms = {
        serverHostKey: { remove: algorithms, prepend: algorithms, append: [] },
      };
    }

    return await new Promise<Live>((resolve, reject) => {
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        client.destroy();
        sock.destroy();
        reject(err);
      };
      client.on("ready", () => {
        if (settled) return;
        settled = true;
        stats.connectionsOpened++;
        resolve(live);
      });
      client.on("error", (err) => {
        const reason = messageOf(err);
        if (settled) {
          live.lostReason ??= reason;
          return;
        }
        if (refused !== undefined) {
          fail(
            new SshConnectionError(
              label,
              "host-key",
              `${label}: host key verification failed: ${refused}; refusing to connect`,
            ),
          );
          return;
        }
        const level = levelOf(err);
        if (level === "agent") {
          notes.push(`agent: ${reason}`);
          return;
        }
        if (level === "client-authentication") {
          if (!/all configured authentication methods failed/i.test(err.message)) {
            notes.push(reason);
            return;
          }
          fail(
            new SshConnectionError(
              label,
              "auth",
              this.authFailure(
                methods.map((m) => m.method),
                notes,
              ),
            ),
          );
          return;
        }
        if (level === "client-timeout") {
          fail(new RetryableDialError(`no ssh handshake within ${this.conn.perDialTimeout}s`));
          return;
        }
        fail(new RetryableDialError(reason));
      });
      client.on("close", () => {
        this.dropLive(live);
        live.ended = true;
        markEnded();
        sock.destroy();
        fail(new RetryableDialError("the connection closed during the ssh handshake"));
      });
      try {
        client.connect(config);
      } catch (err) {
        // ssh2 parses privateKey (and its passphrase) synchronously here
        fail(
          new SshConnectionError(
            label,
            "config",
            `${label}: cannot use the connection's credentials: ${messageOf(err)}`,
          ),
        );
      }
    });
  }

  private authMethods(): Array<{
    method: "publickey" | "password" | "agent" | "none";
    config: Partial<ConnectConfig>;
  }> {
    const { privateKey, privateKeyPassword, password, agentSocketPath } = this.conn;
    const methods: Array<{
      method: "publickey" | "password" | "agent" | "none";
      config: Partial<ConnectConfig>;
    }> = [];
    if (privateKey !== undefined) {
      methods.push({
        method: "publickey",
        config:
          privateKeyPassword !== undefined
            ? { privateKey, passphrase: privateKeyPassword }
            : { privateKey },
      });
    }
    if (password !== undefined) methods.push({ method: "password", config: { password } });
    // Like @pulumi/command, the agent defaults to SSH_AUTH_SOCK.
    const agent = agentSocketPath ?? process.env["SSH_AUTH_SOCK"];
    if (agent) methods.push({ method: "agent", config: { agent } });
    if (methods.length === 0) methods.push({ method: "none", config: {} });
    return methods;
  }

  private authFailure(offered: readonly string[], notes: readonly string[]): string {
    const extra = notes.length > 0 ? ` (${notes.join("; ")})` : "";
    if (offered.length === 1 && offered[0] === "none") {
      return (
        `${this.label}: authentication failed: no credentials given; ` +
        `set connection.privateKey, connection.password or connection.agentSocketPath${extra}`
      );
    }
    return `${this.label}: authentication failed: the server accepted none of the offered methods (${offered.join(", ")})${extra}`;
  }

  private async openTunnel(proxy: SshHost): Promise<ClientChannel> {
    const { host, port } = this.conn;
    try {
      return await proxy.openForward(host, port);
    } catch (err) {
      if (err instanceof TunnelError) {
        throw new RetryableDialError(
          `proxy ${proxy.label} could not open a tunnel to ${host}:${port}: ${err.message}`,
        );
      }
      // The proxy's own dial already retried; its refusal or failure ends this dial too.
      const kind = err instanceof SshConnectionError ? err.kind : "dial";
      throw new SshConnectionError(
        this.label,
        kind,
        `${this.label}: through proxy ${messageOf(err)}`,
      );
    }
  }

  private async hostKeyCheck(): Promise<HostKeyCheck> {
    const { host, port, hostKey } = this.conn;
    const label = this.label;
    if (hostKey !== undefined) {
      const pin = parseHostKeyPin(hostKey);
      if (!pin) {
        throw new SshConnectionError(
          label,
          "config",
          `${label}: connection.hostKey is neither an OpenSSH public key line nor a SHA256: fingerprint`,
        );
      }
      return {
        verify: (blob) => checkPinnedHostKey(blob, pin),
        preferTypes: pin.type ? [pin.type] : [],
      };
    }
    if (this.conn.insecureIgnoreHostKey) {
      let warned = false;
      return {
        verify: (blob) => {
          if (!warned) {
            warned = true;
            logWarn(
              `${label}: insecureIgnoreHostKey is set: accepting host key ${describeKey(blob)} without verification`,
            );
          }
          return { ok: true };
        },
        preferTypes: [],
      };
    }
    const file = expandHome(this.conn.knownHostsFile ?? join(homedir(), ".ssh", "known_hosts"));
    let content: string | undefined;
    try {
      content = await readLocalFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new SshConnectionError(
          label,
          "config",
          `${label}: cannot read known_hosts file ${file}: ${messageOf(err)}`,
        );
      }
    }
    return {
      verify: (blob) => checkKnownHosts(blob, content, host, port, file),
      preferTypes: content === undefined ? [] : knownHostKeyTypes(content, host, port),
    };
  }
}
