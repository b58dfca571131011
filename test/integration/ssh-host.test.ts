import { spawn, execFileSync } from "node:child_process";
import { timingSafeEqual } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, utils as sshUtils, type Connection as ServerClient, type ParsedKey } from "ssh2";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Connection, connectionLabel } from "../../provider/src/host/connection";
import {
  CommandDeadlineError,
  CommandError,
  CommandSignalError,
  SshConnectionError,
} from "../../provider/src/errors";
import { readFile, writeFile, type Host, type RunResult } from "../../provider/src/host/host";
import { closeAllHosts, hostFor, sshStats } from "../../provider/src/host/pool";
import { REMOTE_SHELL_ENV, remoteShellCommand } from "../../provider/src/host/remote-shell";
import { IDLE_CLOSE_MS } from "../../provider/src/host/ssh-host";

// A real ssh2.Server in this process (pulumi-command's approach) that runs each exec'd command
// with /bin/sh -c, so these tests check the exact command lines the provider sends. Most run with
// the remote shell off (PULUMI_HYPERVISOR_SSH_SHELL=off): a session per command, the exact line
// in each, which is also the fallback where a shell cannot start. "remote shell" below turns it on.

interface TestServer {
  readonly port: number;
  readonly hostKeyLine: string;
  readonly fingerprint: string;
  /** Commands received in exec requests, in order. */
  readonly execs: string[];
  /** Direct-tcpip (proxy) requests, as "host:port". */
  readonly tunnels: string[];
  readonly env: Record<string, string>;
  tcpConnections: number;
  openSockets: number;
  authAttempts: number;
  sessions: number;
  maxSessions: number;
  /** The compression each connection negotiated, client to server. */
  readonly compressions: string[];
  dropAll(): void;
  close(): Promise<void>;
}

interface ServerOptions {
  readonly hostKey: string;
  /** Refuse session channels beyond this many at once, as sshd's MaxSessions does. */
  readonly sessionLimit?: number;
  /** Answer every exec at once, without a process: reply, output, exit status and close in one write. */
  readonly instant?: boolean;
  /** The transport compression the server offers (ssh2's default: none and zlib). */
  readonly compress?: Array<"none" | "zlib" | "zlib@openssh.com">;
}

let dir: string;
let bin: string;
let clientKey: string;
let encryptedClientKey: string;
let allowedKeys: ParsedKey[];
const USER = "tester";
const PASSWORD = "pw-!'\"$(x)";
const KEY_PASSPHRASE = "key passphrase";
let savedAgent: string | undefined;

function keygen(name: string, passphrase = ""): string {
  const file = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", file]);
  return file;
}

function fingerprintOf(pubFile: string): string {
  return execFileSync("ssh-keygen", ["-lf", pubFile], { encoding: "utf8" }).split(" ")[1] ?? "";
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const FAKE_SUDO = `#!/bin/sh
# sudo test double: records its argv; with -S prints the -p prompt on stderr and reads one
# password line from stdin, twice at most. FAKE_SUDO_NOPASSWD_ENV: like sudoers with
# "NOPASSWD: /usr/bin/env", the probe needs a password but commands run through env do not.
printf '%s\\n' "$*" >> "$FAKE_SUDO_LOG"
S= N= P=
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -S) S=1 ;;
    -n) N=1 ;;
    -k) ;;
    -p) shift; P=$1 ;;
    -*) echo "fake sudo: unexpected option $1" >&2; exit 64 ;;
    *) break ;;
  esac
  shift
done
if [ -n "$FAKE_SUDO_NOPASSWD_ENV" ] && [ "$1" = env ]; then
  :
elif [ -z "$FAKE_SUDO_NOPASSWD" ]; then
  if [ -n "$S" ]; then
    for try in 1 2; do
      printf '%s' "$P" >&2
      IFS= read -r pw || { echo "sudo: no password was provided" >&2; exit 1; }
      printf '%s\\n' "$pw" >> "$FAKE_SUDO_PASSWORDS"
      [ "$pw" = "$FAKE_SUDO_PASSWORD" ] && break
      echo "Sorry, try again." >&2
      [ "$try" = 2 ] && { echo "sudo: 2 incorrect password attempts" >&2; exit 1; }
    done
  elif [ -n "$N" ]; then
    echo "sudo: a password is required" >&2; exit 1
  fi
fi
exec "$@"
`;

async function startServer(opts: ServerOptions): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  // TMPDIR: the remote shells' private directories go into the test's own directory, so a loop
  // a test kills (no EXIT trap) leaves nothing in the machine's /dev/shm
  const tmp = join(dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  const env: Record<string, string> = { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, TMPDIR: tmp };
  const state: TestServer = {
    port: 0,
    hostKeyLine: readFileSync(`${opts.hostKey}.pub`, "utf8").trim(),
    fingerprint: fingerprintOf(`${opts.hostKey}.pub`),
    execs: [],
    tunnels: [],
    env,
    tcpConnections: 0,
    openSockets: 0,
    authAttempts: 0,
    sessions: 0,
    maxSessions: 0,
    compressions: [],
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };

  const onClient = (client: ServerClient): void => {
    client.on("error", () => undefined);
    client.on("handshake", (negotiated) => state.compressions.push(negotiated.cs.compress));
    client.on("authentication", (ctx) => {
      state.authAttempts++;
      if (ctx.username !== USER) return ctx.reject();
      if (ctx.method === "password") {
        return sameBytes(Buffer.from(ctx.password), Buffer.from(PASSWORD))
          ? ctx.accept()
          : ctx.reject();
      }
      if (ctx.method === "publickey") {
        const key = allowedKeys.find(
          (k) => k.type === ctx.key.algo && sameBytes(ctx.key.data, k.getPublicSSH()),
        );
        if (!key) return ctx.reject();
        if (
          ctx.signature &&
          ctx.blob &&
          key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true
        ) {
          return ctx.reject();
        }
        return ctx.accept();
      }
      return ctx.reject(["password", "publickey"]);
    });
    client.on("ready", () => {
      client.on("session", (accept, reject) => {
        if (opts.sessionLimit !== undefined && state.sessions >= opts.sessionLimit) {
          reject();
          return;
        }
        const session = accept();
        state.sessions++;
        state.maxSessions = Math.max(state.maxSessions, state.sessions);
        let counted = true;
        const done = (): void => {
          if (counted) state.sessions--;
          counted = false;
        };
        session.once("close", done);
        session.once("exec", (acceptExec, _rejectExec, info) => {
          state.execs.push(info.command);
          const stream = acceptExec();
          stream.once("close", done);
          if (opts.instant) {
            stream.write(`${info.command}\n`);
            stream.exit(0);
            stream.end();
            return;
          }
          const child = spawn("/bin/sh", ["-c", info.command], { env: { ...env }, cwd: dir });
          child.stdin.on("error", () => undefined);
          stream.pipe(child.stdin);
          child.stdout.pipe(stream, { end: false });
          child.stderr.pipe(stream.stderr, { end: false });
          stream.once("close", () => child.kill("SIGKILL"));
          child.once("close", (code, signal) => {
            if (signal) stream.exit(signal);
            else stream.exit(code ?? 255);
            stream.end();
          });
        });
      });
      client.on("tcpip", (accept, reject, info) => {
        state.tunnels.push(`${info.destIP}:${info.destPort}`);
        // Bastions in these tests reach 127.0.0.1 only.
        if (info.destIP !== "127.0.0.1") {
          reject();
          return;
        }
        const upstream = net.connect(info.destPort, "127.0.0.1");
        let opened = false;
        upstream.once("connect", () => {
          opened = true;
          const channel = accept();
          channel.pipe(upstream).pipe(channel);
          channel.once("close", () => upstream.destroy());
          upstream.once("close", () => channel.destroy());
        });
        upstream.on("error", () => {
          if (!opened) reject();
        });
      });
    });
  };

  const ssh = new Server(
    {
      hostKeys: [readFileSync(opts.hostKey)],
      ...(opts.compress ? { algorithms: { compress: opts.compress } } : {}),
    },
    onClient,
  );
  const tcp = net.createServer((socket) => {
    state.tcpConnections++;
    state.openSockets++;
    sockets.add(socket);
    socket.once("close", () => {
      state.openSockets--;
      sockets.delete(socket);
    });
    ssh.injectSocket(socket);
  });
  await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", () => resolve()));
  const address = tcp.address();
  if (address === null || typeof address === "string") throw new Error("no tcp address");
  return Object.assign(state, { port: address.port });
}

function connect(
  server: { port: number; hostKeyLine?: string },
  extra: Record<string, unknown> = {},
): Connection {
  return Connection.parse({
    host: "127.0.0.1",
    port: server.port,
    user: USER,
    privateKey: readFileSync(clientKey, "utf8"),
    ...(server.hostKeyLine !== undefined ? { hostKey: server.hostKeyLine } : {}),
    ...extra,
  });
}

// Captures this process's stderr (where logWarn writes) for the duration of fn.
async function withStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const spy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const result = await fn();
    return { result, stderr: spy.mock.calls.map((c) => String(c[0])).join("") };
  } finally {
    spy.mockRestore();
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (err instanceof Error) return err;
    throw new Error(`rejected with a non-error: ${String(err)}`);
  }
  throw new Error("expected a rejection");
}

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      const port = address !== null && typeof address === "object" ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

let hostKeyA: string;
let hostKeyB: string;
let hostKeyC: string;
let main: TestServer;

let savedShell: string | undefined;

beforeAll(async () => {
  savedShell = process.env[REMOTE_SHELL_ENV];
  process.env[REMOTE_SHELL_ENV] = "off";
  savedAgent = process.env["SSH_AUTH_SOCK"];
  delete process.env["SSH_AUTH_SOCK"];
  dir = mkdtempSync(join(tmpdir(), "ssh-host-test-"));
  bin = join(dir, "bin");
  execFileSync("mkdir", ["-p", bin]);
  writeFileSync(join(bin, "sudo"), FAKE_SUDO);
  chmodSync(join(bin, "sudo"), 0o755);
  hostKeyA = keygen("host_a");
  hostKeyB = keygen("host_b");
  hostKeyC = keygen("host_c");
  clientKey = keygen("client");
  encryptedClientKey = keygen("client_encrypted", KEY_PASSPHRASE);
  allowedKeys = [clientKey, encryptedClientKey].map((f) => {
    const parsed = sshUtils.parseKey(readFileSync(`${f}.pub`));
    if (parsed instanceof Error) throw parsed;
    return parsed;
  });
  main = await startServer({ hostKey: hostKeyA });
});

afterEach(async () => {
  await closeAllHosts();
});

afterAll(async () => {
  await closeAllHosts();
  await main.close();
  rmSync(dir, { recursive: true, force: true });
  if (savedAgent !== undefined) process.env["SSH_AUTH_SOCK"] = savedAgent;
  if (savedShell === undefined) delete process.env[REMOTE_SHELL_ENV];
  else process.env[REMOTE_SHELL_ENV] = savedShell;
});

describe("SshHost.run", () => {
  it("sends env LC_ALL=C and the quoted argv, and returns stdout, stderr and the exit code", async () => {
    const host = hostFor(connect(main));
    const result = await host.run({
      argv: ["sh", "-c", 'echo "out $1"; echo err >&2; exit 3', "sh", "a b'c"],
      okExitCodes: [3],
    });
    expect(result).toEqual({ exitCode: 3, stdout: "out a b'c\n", stderr: "err\n" });
    expect(main.execs.at(-1)).toBe(
      `env 'LC_ALL=C' sh -c 'echo "out $1"; echo err >&2; exit 3' sh 'a b'\\''c'`,
    );
    expect(host.label).toBe(`${USER}@127.0.0.1:${main.port}`);
  });

  it("delivers stdin, text and a megabyte of bytes", async () => {
    const host = hostFor(connect(main));
    expect((await host.run({ argv: ["cat"], stdin: "line 1\nünïcødé ✓\n" })).stdout).toBe(
      "line 1\nünïcødé ✓\n",
    );
    const big = Buffer.alloc(1024 * 1024, "x");
    expect((await host.run({ argv: ["wc", "-c"], stdin: big })).stdout.trim()).toBe("1048576");
    // no stdin: the command sees end of file at once instead of waiting
    expect((await host.run({ argv: ["cat"] })).stdout).toBe("");
  });

  it("with compression: true delivers the same bytes, and works with a server that has it off", async () => {
    const noZlib = await startServer({ hostKey: hostKeyA, compress: ["none"] });
    try {
      for (const server of [main, noZlib]) {
        const host = hostFor(connect(server, { compression: true }));
        const big = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
        const r = await host.run({ argv: ["od", "-An", "-tx1", "-v"], stdin: big });
        const back = Buffer.from(r.stdout.replace(/\s+/g, ""), "hex");
        expect(back.equals(big)).toBe(true);
        await closeAllHosts();
      }
      expect(main.compressions.at(-1)).toBe("zlib@openssh.com");
      expect(noZlib.compressions).toEqual(["none"]);
    } finally {
      await noZlib.close();
    }
  });

  it("rejects a failed command with a CommandError naming host, command and stderr", async () => {
    const host = hostFor(connect(main));
    const argv = ["sh", "-c", "echo partial; echo 'no such bridge' >&2; exit 2"];
    const err = await rejection(host.run({ argv }));
    expect(err).toBeInstanceOf(CommandError);
    expect(err.message).toBe(
      `${USER}@127.0.0.1:${main.port}: sh -c 'echo partial; echo '\\''no such bridge'\\'' >&2; exit 2' exited 2: no such bridge`,
    );
    expect(err).toMatchObject({ exitCode: 2, stdout: "partial\n", stderr: "no such bridge\n" });
    expect(await host.run({ argv, reject: false })).toEqual({
      exitCode: 2,
      stdout: "partial\n",
      stderr: "no such bridge\n",
    });
  });

  it("reports a command killed by a signal as an error naming the signal", async () => {
    const host = hostFor(connect(main));
    // dash does not exec the last command of -c, so the signal must hit the shell the server ran
    const err = await rejection(
      host.run({ argv: ["sh", "-c", "echo dying >&2; kill -KILL $PPID"], reject: false }),
    );
    expect(err).toBeInstanceOf(CommandSignalError);
    expect(err.message).toBe(
      `${host.label}: sh -c 'echo dying >&2; kill -KILL $PPID' killed by SIGKILL: dying`,
    );
    expect(err).toMatchObject({ signal: "SIGKILL", exitCode: 137 });
  });

  it("kills a command at its deadline and says so, naming the command and the deadline", async () => {
    const host = hostFor(connect(main));
    const t0 = Date.now();
    const err = await rejection(
      host.run({ argv: ["sh", "-c", "echo started; sleep 30"], deadlineMs: 500 }),
    );
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(err).toBeInstanceOf(CommandDeadlineError);
    expect(err.message).toBe(
      `${host.label}: sh -c 'echo started; sleep 30' did not finish within 0.5 s and was killed: started`,
    );
  });

  it("reads and writes files through the host helpers", async () => {
    const host = hostFor(connect(main));
    const path = join(dir, "files", "it's here.conf");
    expect(await readFile(host, path)).toBeUndefined();
    await writeFile(host, path, "allow qbr0\n", 0o600);
    expect(await readFile(host, path)).toBe("allow qbr0\n");
  });
});

describe("host key verification", () => {
  it("accepts the pinned key, as a line or as a SHA256 fingerprint", async () => {
    await expect(hostFor(connect(main)).run({ argv: ["true"] })).resolves.toMatchObject({
      exitCode: 0,
    });
    await expect(
      hostFor(connect(main, { hostKey: main.fingerprint })).run({ argv: ["true"] }),
    ).resolves.toMatchObject({ exitCode: 0 });
  });

  it("refuses a different pinned key before authenticating, naming both fingerprints", async () => {
    const wrong = readFileSync(`${hostKeyB}.pub`, "utf8");
    const before = { tcp: main.tcpConnections, auth: main.authAttempts, execs: main.execs.length };
    const { result: err, stderr } = await withStderr(() =>
      rejection(
        hostFor(connect(main, { hostKey: wrong })).run({ argv: ["touch", join(dir, "pwned")] }),
      ),
    );
    expect(err).toBeInstanceOf(SshConnectionError);
    expect(err.message).toBe(
      `${USER}@127.0.0.1:${main.port}: host key verification failed: presented ${main.fingerprint} (ssh-ed25519), ` +
        `expected ${fingerprintOf(`${hostKeyB}.pub`)} (ssh-ed25519) from connection.hostKey; refusing to connect`,
    );
    expect(err).toMatchObject({ kind: "host-key" });
    // one dial, no retry, no authentication, nothing executed
    expect(main.tcpConnections - before.tcp).toBe(1);
    expect(main.authAttempts).toBe(before.auth);
    expect(main.execs.length).toBe(before.execs);
    expect(stderr).toBe("");
  });

  it("refuses a hostKey that is neither a key nor a fingerprint without dialing", async () => {
    const before = main.tcpConnections;
    // check refuses it first; the dial refuses it too when a connection skipped check
    const parsed = Connection.safeParse({ host: "127.0.0.1", hostKey: "not a key" });
    expect(parsed.error?.issues.map((i) => [i.path.join("."), i.message])).toEqual([
      [
        "hostKey",
        "must be an OpenSSH public key line (ssh-ed25519 AAAA...) or a SHA256: fingerprint",
      ],
    ]);
    const err = await rejection(
      hostFor({ ...connect(main), hostKey: "not a key" }).run({ argv: ["true"] }),
    );
    expect(err.message).toBe(
      `${USER}@127.0.0.1:${main.port}: connection.hostKey is neither an OpenSSH public key line nor a SHA256: fingerprint`,
    );
    expect(main.tcpConnections).toBe(before);
  });

  it("checks knownHostsFile: a [host]:port entry matches, a changed key or no entry is refused", async () => {
    const knownHosts = join(dir, "known_hosts");
    const body = main.hostKeyLine.split(" ").slice(0, 2).join(" ");
    const otherBody = readFileSync(`${hostKeyB}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
    const conn = () => connect({ port: main.port }, { knownHostsFile: knownHosts });
    const execs = main.execs.length;

    writeFileSync(knownHosts, `127.0.0.1 ${otherBody}\n[127.0.0.1]:${main.port} ${body}\n`);
    await expect(hostFor(conn()).run({ argv: ["true"] })).resolves.toMatchObject({ exitCode: 0 });
    await closeAllHosts();

    writeFileSync(knownHosts, `# lab\n[127.0.0.1]:${main.port} ${otherBody}\n`);
    const changed = await rejection(hostFor(conn()).run({ argv: ["true"] }));
    expect(changed.message).toBe(
      `${USER}@127.0.0.1:${main.port}: host key verification failed: presented ${main.fingerprint} (ssh-ed25519), ` +
        `expected ${fingerprintOf(`${hostKeyB}.pub`)} (ssh-ed25519) from ${knownHosts} line 2; refusing to connect`,
    );
    await closeAllHosts();

    writeFileSync(knownHosts, `127.0.0.1 ${body}\n`);
    const unknown = await rejection(hostFor(conn()).run({ argv: ["true"] }));
    expect(unknown.message).toBe(
      `${USER}@127.0.0.1:${main.port}: host key verification failed: presented ${main.fingerprint} (ssh-ed25519), ` +
        `no entry for [127.0.0.1]:${main.port} in ${knownHosts}; add the host's key there or set connection.hostKey; ` +
        `refusing to connect`,
    );
    expect(main.execs.length).toBe(execs + 1);
  });

  it("accepts a hashed known_hosts entry written by ssh-keygen -H", async () => {
    const knownHosts = join(dir, "known_hosts_hashed");
    writeFileSync(knownHosts, `[127.0.0.1]:${main.port} ${main.hostKeyLine}\n`);
    execFileSync("ssh-keygen", ["-H", "-f", knownHosts], { stdio: "ignore" });
    expect(readFileSync(knownHosts, "utf8")).toMatch(/^\|1\|/);
    const host = hostFor(connect({ port: main.port }, { knownHostsFile: knownHosts }));
    await expect(host.run({ argv: ["true"] })).resolves.toMatchObject({ exitCode: 0 });
  });

  it("with insecureIgnoreHostKey accepts any key and warns on every connect", async () => {
    const host = hostFor(connect({ port: main.port }, { insecureIgnoreHostKey: true }));
    const { stderr } = await withStderr(async () => {
      await host.run({ argv: ["true"] });
      await closeAllHosts();
      await host.run({ argv: ["true"] });
    });
    const warning =
      `pulumi-hypervisor: warning: ${USER}@127.0.0.1:${main.port}: insecureIgnoreHostKey is set: ` +
      `accepting host key ${main.fingerprint} (ssh-ed25519) without verification\n`;
    expect(stderr).toBe(warning + warning);
  });
});

describe("connection pooling", () => {
  it("runs 30 concurrent commands on 1 connection with at most 8 channels at once", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const before = sshStats();
      const host = hostFor(connect(server));
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          host.run({ argv: ["sh", "-c", 'sleep 0.1; echo "$1"', "sh", String(i)] }),
        ),
      );
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 30 }, (_, i) => `${i}\n`));
      expect(server.tcpConnections).toBe(1);
      expect(server.maxSessions).toBe(8);
      const after = sshStats();
      expect(after.connectionsOpened - before.connectionsOpened).toBe(1);
      expect(after.channelsOpened - before.channelsOpened).toBe(30);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("retries a session the server refuses (MaxSessions below 8) instead of failing", async () => {
    const server = await startServer({ hostKey: hostKeyB, sessionLimit: 3 });
    try {
      const host = hostFor(connect(server));
      const { result, stderr } = await withStderr(() =>
        Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            host.run({ argv: ["sh", "-c", "sleep 0.1; echo $0", String(i)] }),
          ),
        ),
      );
      expect(result.map((r) => r.stdout)).toEqual(Array.from({ length: 10 }, (_, i) => `${i}\n`));
      expect(server.maxSessions).toBe(3);
      expect(stderr).toContain(
        `${host.label}: the server refused a new session (channel open failure); retry 1/8 in 0.1s\n`,
      );
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("sees exit statuses that arrive in the same read as the exec reply", async () => {
    const server = await startServer({ hostKey: hostKeyB, instant: true });
    try {
      const host = hostFor(connect(server));
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => host.run({ argv: ["echo", String(i)] })),
      );
      expect(results).toEqual(
        Array.from({ length: 50 }, (_, i) => ({
          exitCode: 0,
          stdout: `env 'LC_ALL=C' echo ${i}\n`,
          stderr: "",
        })),
      );
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("shares one host object per connection and keeps differing settings apart", () => {
    expect(hostFor(connect(main))).toBe(hostFor(connect(main)));
    expect(hostFor(connect(main))).not.toBe(hostFor(connect(main, { sudo: true })));
  });

  it("keeps an idle connection through a pause, closes it after IDLE_CLOSE_MS and reconnects transparently", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      expect((await host.run({ argv: ["echo", "one"] })).stdout).toBe("one\n");
      expect(server.openSockets).toBe(1);
      // a pause of the engine's between a host's steps: the next step finds the connection open
      await new Promise((r) => setTimeout(r, 2000));
      expect(server.openSockets).toBe(1);
      expect((await host.run({ argv: ["echo", "two"] })).stdout).toBe("two\n");
      expect(server.tcpConnections).toBe(1);
      const idleFrom = Date.now();
      await waitFor(
        "the idle connection to close",
        () => server.openSockets === 0,
        IDLE_CLOSE_MS + 5000,
      );
      expect(Date.now() - idleFrom).toBeGreaterThanOrEqual(IDLE_CLOSE_MS - 100);
      expect((await host.run({ argv: ["echo", "three"] })).stdout).toBe("three\n");
      expect(server.tcpConnections).toBe(2);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("fails the in-flight command when the connection drops, and reconnects for the next", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      const running = rejection(host.run({ argv: ["sleep", "30"] }));
      await waitFor("the command to start", () => server.execs.length === 1);
      server.dropAll();
      const err = await running;
      expect(err).toBeInstanceOf(SshConnectionError);
      expect(err.message).toMatch(
        new RegExp(`^${host.label.replace(/\./g, "\\.")}: connection lost while running sleep 30`),
      );
      expect((await host.run({ argv: ["echo", "back"] })).stdout).toBe("back\n");
      expect(server.tcpConnections).toBe(2);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });
});

describe("dialing and authentication", () => {
  it("retries a refused dial with a warning per retry, then fails naming host and attempts", async () => {
    const port = await freePort();
    const conn = connect(
      { port },
      { perDialTimeout: 1, dialErrorLimit: 3, insecureIgnoreHostKey: true },
    );
    const label = connectionLabel(conn);
    const started = Date.now();
    const { result: err, stderr } = await withStderr(() =>
      rejection(hostFor(conn).run({ argv: ["true"] })),
    );
    expect(err).toBeInstanceOf(SshConnectionError);
    expect(err.message).toBe(
      `${label}: could not connect after 3 attempts: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
    expect(stderr.trimEnd().split("\n")).toEqual([
      `pulumi-hypervisor: warning: ${label}: connect attempt 1/3 failed: connect ECONNREFUSED 127.0.0.1:${port}; retrying in 0.5s`,
      `pulumi-hypervisor: warning: ${label}: connect attempt 2/3 failed: connect ECONNREFUSED 127.0.0.1:${port}; retrying in 1s`,
    ]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
  });

  it("gives concurrent runs of an unreachable host one dial's error instead of dialing again", async () => {
    const port = await freePort();
    const conn = connect(
      { port },
      { perDialTimeout: 1, dialErrorLimit: 1, insecureIgnoreHostKey: true },
    );
    const host = hostFor(conn);
    const errors = await Promise.all(
      Array.from({ length: 20 }, () => rejection(host.run({ argv: ["true"] }))),
    );
    expect(new Set(errors.map((e) => e.message)).size).toBe(1);
    expect(new Set(errors).size).toBe(1);
  });

  it("times out a dial to a server that never speaks ssh after perDialTimeout", async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
    const address = silent.address();
    const port = address !== null && typeof address === "object" ? address.port : 0;
    try {
      const conn = connect(
        { port },
        { perDialTimeout: 1, dialErrorLimit: 1, insecureIgnoreHostKey: true },
      );
      const started = Date.now();
      const err = await rejection(hostFor(conn).run({ argv: ["true"] }));
      expect(err.message).toBe(
        `${connectionLabel(conn)}: could not connect after 1 attempt: no ssh handshake within 1s`,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      silent.close();
      await closeAllHosts();
    }
  });

  it("logs in with a password", async () => {
    const host = hostFor(connect(main, { privateKey: undefined, password: PASSWORD }));
    expect((await host.run({ argv: ["id", "-un"] })).exitCode).toBe(0);
  });

  it("fails a wrong password at once, without retrying and without the password in the error", async () => {
    const before = main.tcpConnections;
    const host = hostFor(
      connect(main, { privateKey: undefined, password: "wrong-secret", dialErrorLimit: 5 }),
    );
    const { result: err, stderr } = await withStderr(() => rejection(host.run({ argv: ["true"] })));
    expect(err).toBeInstanceOf(SshConnectionError);
    expect(err).toMatchObject({ kind: "auth" });
    expect(err.message).toBe(
      `${host.label}: authentication failed: the server accepted none of the offered methods (password)`,
    );
    expect(main.tcpConnections - before).toBe(1);
    expect(stderr).toBe("");
  });

  it("says so when no credentials were given", async () => {
    const host = hostFor(connect(main, { privateKey: undefined }));
    const err = await rejection(host.run({ argv: ["true"] }));
    expect(err.message).toBe(
      `${host.label}: authentication failed: no credentials given; set connection.privateKey, connection.password or connection.agentSocketPath`,
    );
  });

  it("logs in with an encrypted private key and privateKeyPassword", async () => {
    const key = readFileSync(encryptedClientKey, "utf8");
    expect(key).toContain("BEGIN OPENSSH PRIVATE KEY");
    const host = hostFor(connect(main, { privateKey: key, privateKeyPassword: KEY_PASSPHRASE }));
    expect((await host.run({ argv: ["echo", "ok"] })).stdout).toBe("ok\n");

    const before = main.tcpConnections;
    const wrong = hostFor(connect(main, { privateKey: key, privateKeyPassword: "not it" }));
    const err = await rejection(wrong.run({ argv: ["true"] }));
    expect(err).toMatchObject({ kind: "config" });
    expect(err.message).toMatch(
      new RegExp(
        `^${wrong.label.replace(/\./g, "\\.")}: cannot use the connection's credentials: `,
      ),
    );
    expect(err.message).not.toContain("not it");
    expect(main.tcpConnections).toBe(before);
  });
});

describe("proxy", () => {
  it("reaches a host through two bastions, each verifying its own host key", async () => {
    const bastion1 = await startServer({ hostKey: hostKeyB });
    const bastion2 = await startServer({ hostKey: hostKeyC });
    const target = main;
    try {
      const before = sshStats();
      const execsBefore = target.execs.length;
      const chain = connect(target, { proxy: connect(bastion2, { proxy: connect(bastion1) }) });
      const host = hostFor(chain);
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => host.run({ argv: ["echo", `via ${i}`] })),
      );
      expect(results.map((r) => r.stdout)).toEqual(
        Array.from({ length: 12 }, (_, i) => `via ${i}\n`),
      );
      expect(target.execs.length - execsBefore).toBe(12);
      expect(bastion1.tunnels).toEqual([`127.0.0.1:${bastion2.port}`]);
      expect(bastion2.tunnels).toEqual([`127.0.0.1:${target.port}`]);
      expect(bastion1.execs).toEqual([]);
      expect(bastion2.execs).toEqual([]);
      expect(sshStats().connectionsOpened - before.connectionsOpened).toBe(3);
      // the bastions are pooled like any host
      expect(hostFor(chain.proxy ?? chain)).toBe(
        hostFor(connect(bastion2, { proxy: connect(bastion1) })),
      );

      // when the target idles out, the bastions follow, each idle once its tunnel has closed
      await waitFor(
        "the chain to close",
        () => bastion1.openSockets === 0 && bastion2.openSockets === 0,
        3 * IDLE_CLOSE_MS + 8000,
      );
      expect((await host.run({ argv: ["echo", "again"] })).stdout).toBe("again\n");
    } finally {
      await closeAllHosts();
      await bastion1.close();
      await bastion2.close();
    }
  });

  it("refuses the middle hop's wrong key, naming that hop", async () => {
    const bastion1 = await startServer({ hostKey: hostKeyB });
    const bastion2 = await startServer({ hostKey: hostKeyC });
    try {
      const execs = main.execs.length;
      const badMiddle = connect(bastion2, { hostKey: main.hostKeyLine, proxy: connect(bastion1) });
      const host = hostFor(connect(main, { proxy: badMiddle }));
      const err = await rejection(host.run({ argv: ["true"] }));
      expect(err).toMatchObject({ kind: "host-key" });
      expect(err.message).toBe(
        `${host.label}: through proxy ${USER}@127.0.0.1:${bastion2.port}: host key verification failed: ` +
          `presented ${bastion2.fingerprint} (ssh-ed25519), expected ${main.fingerprint} (ssh-ed25519) ` +
          `from connection.hostKey; refusing to connect`,
      );
      expect(main.execs.length).toBe(execs);
      expect(bastion2.authAttempts).toBe(0);
    } finally {
      await closeAllHosts();
      await bastion1.close();
      await bastion2.close();
    }
  });
});

describe("sudo", () => {
  const passwordsFile = (): string => join(dir, "sudo-passwords");
  const logFile = (): string => join(dir, "sudo-log");

  function resetSudo(nopasswd: boolean): void {
    writeFileSync(passwordsFile(), "");
    writeFileSync(logFile(), "");
    Object.assign(main.env, {
      FAKE_SUDO_LOG: logFile(),
      FAKE_SUDO_PASSWORDS: passwordsFile(),
      FAKE_SUDO_PASSWORD: "sudo-s3cret 'x'",
      FAKE_SUDO_NOPASSWD: nopasswd ? "1" : "",
    });
  }

  // sudo -S -p <prompt> -k -- env LC_ALL=C sh -c <announce> <ready mark> argv...
  const PASSWORD_RUN =
    /^sudo -S -p '\[pulumi-hypervisor sudo ([0-9a-f]{24})\] password:' -k -- env 'LC_ALL=C' sh -c 'printf "%s\\n" "\$0" >&2; exec "\$@"' '\[pulumi-hypervisor ready \1\]' (.*)$/;

  function passwordRun(exec: string | undefined): { token: string; argv: string } {
    const m = PASSWORD_RUN.exec(exec ?? "");
    expect(m, exec).not.toBeNull();
    return { token: m?.[1] ?? "", argv: m?.[2] ?? "" };
  }

  it("sends the password only to sudo's own prompt and never in a command line, log or error", async () => {
    resetSudo(false);
    const secret = "sudo-s3cret 'x'";
    const host = hostFor(connect(main, { sudo: { password: secret } }));
    const execs = main.execs.length;
    const { result, stderr } = await withStderr(async () => {
      const out = await host.run({ argv: ["cat"], stdin: "payload\n" });
      const failed = await rejection(host.run({ argv: ["sh", "-c", "echo oops >&2; exit 4"] }));
      return { out, failed };
    });
    expect(result.out).toEqual({ exitCode: 0, stdout: "payload\n", stderr: "" });
    expect(result.failed.message).toBe(
      `${host.label}: sh -c 'echo oops >&2; exit 4' exited 4: oops`,
    );
    expect((result.failed as CommandError).stderr).toBe("oops\n");
    const runs = main.execs.slice(execs);
    expect(runs[0]).toBe("sudo -n -k true");
    expect(passwordRun(runs[1]).argv).toBe("cat");
    expect(passwordRun(runs[2]).argv).toBe("sh -c 'echo oops >&2; exit 4'");
    expect(passwordRun(runs[1]).token).not.toBe(passwordRun(runs[2]).token);
    expect(runs).toHaveLength(3);
    expect(readFileSync(passwordsFile(), "utf8")).toBe(`${secret}\n${secret}\n`);
    for (const text of [
      ...main.execs,
      stderr,
      result.failed.message,
      readFileSync(logFile(), "utf8"),
    ]) {
      expect(text).not.toContain("s3cret");
    }
  });

  it("never makes the password a command's stdin where sudoers lets the command run without it", async () => {
    resetSudo(false);
    main.env["FAKE_SUDO_NOPASSWD_ENV"] = "1";
    try {
      const host = hostFor(connect(main, { sudo: { password: "sudo-s3cret 'y'" } }));
      const { result } = await withStderr(async () => ({
        fed: await host.run({ argv: ["cat"], stdin: "payload\n" }),
        empty: await host.run({ argv: ["cat"] }),
      }));
      expect(result.fed).toEqual({ exitCode: 0, stdout: "payload\n", stderr: "" });
      expect(result.empty).toEqual({ exitCode: 0, stdout: "", stderr: "" });
      expect(readFileSync(passwordsFile(), "utf8")).toBe("");
    } finally {
      main.env["FAKE_SUDO_NOPASSWD_ENV"] = "";
    }
  });

  it("sends a wrong password once, then lets sudo fail without the secret in the error", async () => {
    resetSudo(false);
    const host = hostFor(connect(main, { sudo: { password: "wrong-s3cret" } }));
    const { result: err } = await withStderr(() =>
      rejection(host.run({ argv: ["cat"], stdin: "payload\n" })),
    );
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderr).toBe(
      "Sorry, try again.\nsudo: no password was provided\n",
    );
    expect((err as CommandError).stdout).toBe("");
    expect(err.message).not.toContain("s3cret");
    expect(readFileSync(passwordsFile(), "utf8")).toBe("wrong-s3cret\n");
  });

  it("does not send the password where sudo needs none (it would become the command's stdin)", async () => {
    resetSudo(true);
    const host = hostFor(connect(main, { sudo: { password: "sudo-s3cret 'x'" } }));
    const execs = main.execs.length;
    const { result } = await withStderr(() => host.run({ argv: ["cat"], stdin: "payload\n" }));
    expect(result.stdout).toBe("payload\n");
    expect(main.execs.slice(execs)).toEqual(["sudo -n -k true", "sudo -n -- env 'LC_ALL=C' cat"]);
    expect(readFileSync(passwordsFile(), "utf8")).toBe("");
  });

  it("runs through sudo -n with sudo: true", async () => {
    resetSudo(true);
    const host = hostFor(connect(main, { sudo: true }));
    const execs = main.execs.length;
    expect((await host.run({ argv: ["echo", "hi"] })).stdout).toBe("hi\n");
    expect(main.execs.slice(execs)).toEqual(["sudo -n -- env 'LC_ALL=C' echo hi"]);
  });
});

describe("remote shell", () => {
  // The loop is started by one exec: `sh -c <loop> remote-shell.sh "$SSH_CONNECTION"`, maybe in sudo.
  const isShellStart = (exec: string): boolean =>
    /sh -c '.*' remote-shell\.sh "\$SSH_CONNECTION"$/s.test(exec);
  const passwordsFile = (): string => join(dir, "sudo-passwords");

  beforeAll(() => {
    process.env[REMOTE_SHELL_ENV] = "on";
  });
  afterAll(() => {
    process.env[REMOTE_SHELL_ENV] = "off";
  });

  it("runs 20 commands in one session: one exec starts the loop, the commands are frames", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const before = sshStats();
      const host = hostFor(connect(server));
      for (let i = 0; i < 20; i++) {
        const r = await host.run({ argv: ["sh", "-c", 'echo "$1"; echo e >&2', "sh", `n ${i}`] });
        expect(r).toEqual({ exitCode: 0, stdout: `n ${i}\n`, stderr: "e\n" });
      }
      expect((await host.run({ argv: ["cat"], stdin: "in\n" })).stdout).toBe("in\n");
      const failed = await rejection(host.run({ argv: ["sh", "-c", "echo no >&2; exit 4"] }));
      expect(failed.message).toBe(`${host.label}: sh -c 'echo no >&2; exit 4' exited 4: no`);
      expect(server.execs).toHaveLength(1);
      expect(isShellStart(server.execs[0] ?? "")).toBe(true);
      expect(sshStats().channelsOpened - before.channelsOpened).toBe(1);
      expect(server.maxSessions).toBe(1);
      // an idle shell does not keep the connection open: both close after IDLE_CLOSE_MS
      await waitFor(
        "the idle connection to close",
        () => server.openSockets === 0,
        IDLE_CLOSE_MS + 5000,
      );
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  const thirtyAtOnce = (host: Host): Promise<RunResult[]> =>
    Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        host.run({ argv: ["sh", "-c", 'sleep 0.1; echo "$1"', "sh", String(i)] }),
      ),
    );
  const thirtyLines = Array.from({ length: 30 }, (_, i) => `${i}\n`);

  it("runs 30 concurrent commands in at most 6 shells (all 8 sessions but two), one session each", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      expect((await thirtyAtOnce(host)).map((r) => r.stdout)).toEqual(thirtyLines);
      expect(server.tcpConnections).toBe(1);
      // every session is a shell: two stay free for a session of its own
      expect(server.maxSessions).toBe(6);
      expect(server.execs.length).toBe(6);
      expect(server.execs.every(isShellStart)).toBe(true);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  // Thirty commands at once on a server that refuses sessions past `limit`, as sshd's MaxSessions.
  const onLimitedServer = async (
    limit: number,
    check: (server: TestServer, label: string, stderr: string) => void,
  ): Promise<void> => {
    const server = await startServer({ hostKey: hostKeyB, sessionLimit: limit });
    try {
      const host = hostFor(connect(server));
      const { result, stderr } = await withStderr(() => thirtyAtOnce(host));
      expect(result.map((r) => r.stdout)).toEqual(thirtyLines);
      expect(server.maxSessions).toBe(limit);
      check(server, host.label, stderr);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  };
  const learned = (stderr: string): string[] =>
    stderr.split("\n").filter((l) => l.includes("sessions at once from now on"));

  it("takes a refused fifth shell as the server's limit, without a warning or a retry", () =>
    onLimitedServer(4, (server, label, stderr) => {
      expect(stderr).not.toContain("refused");
      expect(learned(stderr)).toEqual([
        `pulumi-hypervisor: ${label}: at most 4 sessions at once from now on`,
      ]);
      // four shells serve every command: the fifth was asked for once
      expect(server.execs.filter(isShellStart)).toHaveLength(4);
    }));

  it("asks for a shell past half only once the first half said hello", () =>
    // a server below half refuses one of the first four: the limit it learns is its own, at once
    onLimitedServer(3, (_server, label, stderr) => {
      expect(learned(stderr)).toEqual([
        `pulumi-hypervisor: ${label}: at most 3 sessions at once from now on`,
      ]);
    }));

  it("keeps its shells to half the sessions while a session of its own is open", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      // a host lock's holder where shells do not start is such a session (lock.ts)
      const stop = new AbortController();
      const own = host
        .run({ argv: ["sleep", "30"], ownSession: true, signal: stop.signal })
        .catch((e: unknown) => e);
      await waitFor("the session of its own", () =>
        server.execs.some((e) => e.endsWith("sleep 30")),
      );
      expect((await thirtyAtOnce(host)).map((r) => r.stdout)).toEqual(thirtyLines);
      stop.abort();
      expect(await own).toBeInstanceOf(Error);
      expect(server.maxSessions).toBe(5);
      expect(server.execs.filter(isShellStart)).toHaveLength(4);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("kills a command at its deadline with what it started, and the same shell runs the next", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      const t0 = Date.now();
      const err = await rejection(
        host.run({ argv: ["sh", "-c", "echo started; sleep 30"], deadlineMs: 500 }),
      );
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(err).toBeInstanceOf(CommandDeadlineError);
      expect(err.message).toBe(
        `${host.label}: sh -c 'echo started; sleep 30' did not finish within 0.5 s and was killed: started`,
      );
      expect((await host.run({ argv: ["echo", "next"] })).stdout).toBe("next\n");
      expect(server.execs).toHaveLength(1);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("stops an aborted command with the abort's reason and keeps the shell", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      const stop = new AbortController();
      const running = rejection(host.run({ argv: ["sleep", "30"], signal: stop.signal }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const t0 = Date.now();
      stop.abort(new Error("cancelled by the engine"));
      const err = await running;
      expect(err.message).toBe("cancelled by the engine");
      expect(Date.now() - t0).toBeLessThan(2000);
      expect((await host.run({ argv: ["echo", "after"] })).stdout).toBe("after\n");
      expect(server.execs).toHaveLength(1);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("replaces a shell whose loop was killed, transparently", async () => {
    const server = await startServer({ hostKey: hostKeyB });
    try {
      const host = hostFor(connect(server));
      // the request's `exec` replaces the subshell, so the command's parent is the loop itself
      const loopPid = async (): Promise<number> =>
        Number(
          (
            await host.run({
              argv: ["sh", "-c", 'grep -q remote-shell.sh /proc/$PPID/cmdline && echo "$PPID"'],
            })
          ).stdout,
        );
      const first = await loopPid();
      process.kill(first, "SIGKILL");
      const second = await loopPid();
      expect(second).not.toBe(first);
      expect(server.execs).toHaveLength(2);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });

  it("gives the session's client address from the shell's hello, without another session", async () => {
    main.env["SSH_CONNECTION"] = "127.0.0.1 40000 127.0.0.1 22";
    try {
      const host = hostFor(connect(main));
      const execs = main.execs.length;
      await host.run({ argv: ["true"] });
      expect(await host.sessionClientAddress?.()).toBe("127.0.0.1");
      expect(main.execs.length - execs).toBe(1);
    } finally {
      delete main.env["SSH_CONNECTION"];
    }
  });

  it("starts the loop once through sudo -S: the password once, to sudo's prompt only", async () => {
    writeFileSync(passwordsFile(), "");
    writeFileSync(join(dir, "sudo-log"), "");
    const secret = "sudo-s3cret 'x'";
    Object.assign(main.env, {
      FAKE_SUDO_LOG: join(dir, "sudo-log"),
      FAKE_SUDO_PASSWORDS: passwordsFile(),
      FAKE_SUDO_PASSWORD: secret,
      FAKE_SUDO_NOPASSWD: "",
    });
    const host = hostFor(connect(main, { sudo: { password: secret } }));
    const execs = main.execs.length;
    const { result, stderr } = await withStderr(async () => {
      const outs: string[] = [];
      for (let i = 0; i < 5; i++)
        outs.push((await host.run({ argv: ["cat"], stdin: `p${i}` })).stdout);
      return outs;
    });
    expect(result).toEqual(["p0", "p1", "p2", "p3", "p4"]);
    const runs = main.execs.slice(execs);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatch(
      /^sudo -S -p '\[pulumi-hypervisor sudo [0-9a-f]{24}\] password:' -k -- sh -c '/,
    );
    expect(readFileSync(passwordsFile(), "utf8")).toBe(`${secret}\n`);
    for (const text of [...main.execs, stderr]) expect(text).not.toContain("s3cret");
  });

  it("falls back to sessions of their own when sudo refuses the password, which they report", async () => {
    writeFileSync(passwordsFile(), "");
    writeFileSync(join(dir, "sudo-log"), "");
    Object.assign(main.env, {
      FAKE_SUDO_LOG: join(dir, "sudo-log"),
      FAKE_SUDO_PASSWORDS: passwordsFile(),
      FAKE_SUDO_PASSWORD: "sudo-s3cret 'x'",
      FAKE_SUDO_NOPASSWD: "",
    });
    const host = hostFor(connect(main, { sudo: { password: "wrong-s3cret" } }));
    const { result: err, stderr } = await withStderr(() =>
      rejection(host.run({ argv: ["cat"], stdin: "payload\n" })),
    );
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderr).toBe(
      "Sorry, try again.\nsudo: no password was provided\n",
    );
    expect(stderr).toContain("the remote shell did not start (");
    expect(stderr).toContain(
      "sudo refused the password); each command runs on a session of its own",
    );
    // once to the shell's sudo, once to the command's: each a prompt of sudo's own
    expect(readFileSync(passwordsFile(), "utf8")).toBe("wrong-s3cret\nwrong-s3cret\n");
    for (const text of [...main.execs, stderr, err.message]) expect(text).not.toContain("s3cret");
  });

  it("falls back to a session per command, logged once, where the loop does not start", async () => {
    // this server answers every exec at once with the command line: no loop ever says hello
    const server = await startServer({ hostKey: hostKeyB, instant: true });
    try {
      const host = hostFor(connect(server));
      const { result, stderr } = await withStderr(() =>
        Promise.all(Array.from({ length: 5 }, (_, i) => host.run({ argv: ["echo", String(i)] }))),
      );
      expect(result.map((r) => r.stdout)).toEqual(
        Array.from({ length: 5 }, (_, i) => `env 'LC_ALL=C' echo ${i}\n`),
      );
      expect(
        stderr.split("\n").filter((l) => l.includes("the remote shell did not start")),
      ).toEqual([
        `pulumi-hypervisor: ${host.label}: the remote shell did not start (the remote shell said something unexpected: unexpected first line ${JSON.stringify(remoteShellCommand().split("\n")[0])}); each command runs on a session of its own`,
      ]);
    } finally {
      await closeAllHosts();
      await server.close();
    }
  });
});
