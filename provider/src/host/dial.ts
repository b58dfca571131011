import { createConnection } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Client,
  type ClientChannel,
  type CompressionAlgorithm,
  type ConnectConfig,
  type ServerHostKeyAlgorithm,
} from "ssh2";
import { reasonOf, RetryableDialError, SshConnectionError, TunnelError } from "../errors";
import { logWarn } from "../log";
import { authFailureMessage, authMethodsOf } from "./auth";
import type { Connection } from "./connection";
import { hostKeyAlgorithmsFor, hostKeyCheckFor } from "./host-keys";
import { sshCounters } from "./ssh-stats";

// The only file that imports ssh2 at run time: dials one hop (directly or through a tunnel of
// the previous hop), with a deadline per dial, retries with a log line each, and the login.

/** The transport compression a connection with `compression: true` offers, in order. */
export const COMPRESSION: CompressionAlgorithm[] = ["zlib@openssh.com", "zlib", "none"];

/** SSH-level keepalive; three unanswered ones drop the connection. */
export const KEEPALIVE_INTERVAL_MS = 10_000;

const DIAL_BACKOFF_FIRST_MS = 500;
const DIAL_BACKOFF_MAX_MS = 5000;

/** One open SSH connection and what is known about its end. */
export interface LiveConnection {
  readonly client: Client;
  /** No longer used for new channels (idle-closed, dropped or closing). */
  closed: boolean;
  /** The socket has closed. */
  ended: boolean;
  lostReason: string | undefined;
  readonly endedPromise: Promise<void>;
  /** The server's software as its identification line names it ("OpenSSH_9.2p1"), once known. */
  serverSoftware: string | undefined;
}

/** The previous hop of a proxy chain: it opens a tunnel to the next one. */
export interface ProxyHop {
  readonly label: string;
  openForward(host: string, port: number): Promise<ClientChannel>;
}

/** What a dial needs: the connection, its label, its proxy, and who to tell when it closes. */
export interface DialTarget {
  readonly conn: Connection;
  readonly label: string;
  readonly proxy: ProxyHop | undefined;
  /** Runs when the connection closes (during the handshake or later). */
  readonly onClosed: (live: LiveConnection) => void;
}

function levelOf(err: unknown): string | undefined {
  const level = (err as { level?: unknown } | null)?.level;
  return typeof level === "string" ? level : undefined;
}

/** Returns a connection after up to dialErrorLimit dials; a refused key or login ends it at once. */
export async function dialWithRetry(target: DialTarget): Promise<LiveConnection> {
  const limit = target.conn.dialErrorLimit;
  for (let attempt = 1; ; attempt++) {
    try {
      return await dialOnce(target);
    } catch (err) {
      if (!(err instanceof RetryableDialError)) throw err;
      if (attempt >= limit) {
        throw new SshConnectionError(
          target.label,
          "dial",
          `${target.label}: could not connect after ${attempt} attempt${attempt === 1 ? "" : "s"}: ${err.message}`,
        );
      }
      const delay = Math.min(DIAL_BACKOFF_FIRST_MS * 2 ** (attempt - 1), DIAL_BACKOFF_MAX_MS);
      logWarn(
        `${target.label}: connect attempt ${attempt}/${limit} failed: ${err.message}; retrying in ${delay / 1000}s`,
      );
      await sleep(delay);
    }
  }
}

async function openTunnel(target: DialTarget, proxy: ProxyHop): Promise<ClientChannel> {
  const { host, port } = target.conn;
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
      target.label,
      kind,
      `${target.label}: through proxy ${reasonOf(err)}`,
    );
  }
}

async function dialOnce(target: DialTarget): Promise<LiveConnection> {
  const { conn, label } = target;
  const check = await hostKeyCheckFor(conn, label);
  const { host, port, user } = conn;
  // Our own TCP socket, so Nagle can be turned off: with it on, every command's small
  // packets waited on the peer's delayed ACK, about 40 ms per remote command.
  const sock = target.proxy
    ? await openTunnel(target, target.proxy)
    : createConnection({ host, port }).setNoDelay(true);
  const methods = authMethodsOf(conn);
  const client = new Client();
  let refused: string | undefined;
  const notes: string[] = [];
  let settled = false;
  let markEnded = (): void => {};
  const live: LiveConnection = {
    client,
    closed: false,
    ended: false,
    lostReason: undefined,
    serverSoftware: undefined,
    endedPromise: new Promise<void>((resolve) => {
      markEnded = resolve;
    }),
  };

  const config: ConnectConfig = {
    host,
    port,
    username: user,
    readyTimeout: conn.perDialTimeout * 1000,
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
  config.algorithms = {};
  if (algorithms.length > 0) {
    // remove then prepend moves the expected algorithms to the front of ssh2's default list
    config.algorithms.serverHostKey = { remove: algorithms, prepend: algorithms, append: [] };
  }
  // ssh2 offers "none" first; asked for, zlib goes first (zlib@openssh.com starts after the
  // login), and "none" stays for a server that has compression off
  if (conn.compression === true) config.algorithms.compress = COMPRESSION;

  return await new Promise<LiveConnection>((resolve, reject) => {
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      client.destroy();
      sock.destroy();
      reject(err);
    };
    client.on("handshake", () => {
      live.serverSoftware = serverSoftwareOf(client);
    });
    client.on("ready", () => {
      if (settled) return;
      settled = true;
      sshCounters.connectionsOpened++;
      resolve(live);
    });
    client.on("error", (err) => {
      const reason = reasonOf(err);
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
        const offered = methods.map((m) => m.method);
        fail(new SshConnectionError(label, "auth", authFailureMessage(label, offered, notes)));
        return;
      }
      if (level === "client-timeout") {
        fail(new RetryableDialError(`no ssh handshake within ${conn.perDialTimeout}s`));
        return;
      }
      fail(new RetryableDialError(reason));
    });
    client.on("close", () => {
      target.onClosed(live);
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
          `${label}: cannot use the connection's credentials: ${reasonOf(err)}`,
        ),
      );
    }
  });
}

// ssh2 keeps the software field of the server's identification line (RFC 4253, 4.2) in
// `_remoteVer`, set before the key exchange; it has no public accessor. Undefined if that changes:
// then no server is refused for its software.
function serverSoftwareOf(client: Client): string | undefined {
  const v = (client as unknown as { _remoteVer?: unknown })._remoteVer;
  return typeof v === "string" ? v : undefined;
}

// Dropbear (dropbear_2022.83, Debian 12; sysoptions.h MAX_CMD_LEN) ends the whole connection,
// "String too long", on an exec request whose command is over 9,000 bytes.
const DROPBEAR = /^dropbear/i;
const DROPBEAR_MAX_COMMAND = 9000;

/**
 * Throws before a command goes to a server known to refuse the provider's commands: Dropbear ends
 * the connection on any command over 9,000 bytes, and the remote shell's loop and an apply with its
 * look are longer. A proxy hop only forwards, which Dropbear does: this is asked before a command only.
 */
export function refuseServerForCommands(live: LiveConnection, label: string): void {
  const software = live.serverSoftware;
  if (software === undefined || !DROPBEAR.test(software)) return;
  const shown = software.replace(/[^\x21-\x7e]/g, "?").slice(0, 64);
  throw new SshConnectionError(
    label,
    "config",
    `${label}: the SSH server is Dropbear (${shown}), which ends the connection on any command longer than ` +
      `${DROPBEAR_MAX_COMMAND.toLocaleString("en-US")} bytes; pulumi-hypervisor's are longer (its remote shell's loop, an apply with its look), ` +
      `and its lockout checks read the ports of OpenSSH's sshd. Run OpenSSH's sshd on the host (Debian: openssh-server); ` +
      `Dropbear may stay a proxy hop (connection.proxy), which only forwards`,
  );
}
