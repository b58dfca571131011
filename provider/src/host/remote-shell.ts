import { randomBytes } from "node:crypto";
import { scriptBody, shellRequestLine, type CachedScript } from "./script";
import { quoteArgv } from "./quote";

// The client side of remote-shell.sh: one long-lived loop per session that runs commands sent as
// framed requests (the frames are described in remote-shell.sh). Transport-agnostic: SshHost
// plugs an SSH channel into it, the unit tests a local child process.

/** The environment variable that turns the remote shell off ("off": a session per command). */
export const REMOTE_SHELL_ENV = "PULUMI_HYPERVISOR_SSH_SHELL";

/** Returns whether commands run in remote shells, from PULUMI_HYPERVISOR_SSH_SHELL (default on). */
export function remoteShellEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env[REMOTE_SHELL_ENV] ?? "").trim().toLowerCase();
  if (value === "" || value === "on" || value === "1" || value === "true") return true;
  if (value === "off" || value === "0" || value === "false") return false;
  throw new Error(
    `${REMOTE_SHELL_ENV} must be "on" or "off" (default on), not ${JSON.stringify(env[REMOTE_SHELL_ENV])}`,
  );
}

/** The loop script below provider/src. */
export const REMOTE_SHELL_SCRIPT = "host/remote-shell.sh";

const HELLO = "pulumi-hypervisor-shell 3 ";
const MAX_LINE = 4096;

let loopText: string | undefined;

/**
 * Returns the loop's text as the exec request carries it: remote-shell.sh with its includes,
 * without its comment lines, which are half of it, its blank lines and its indentation. The
 * request must stay within the 32 KB payload every SSH server takes (RFC 4253, 6.1; ssh2's server
 * closes the connection past 35,000 bytes a packet, OpenSSH's takes 256 KB); with its comments
 * the loop is over that. The login shell and the loop's shell each parse every byte of it at each
 * shell's start. No line of the loop, of the shell or of its perl, is inside a string or a
 * here-document, or continues the line before it with a backslash: none has a space or a `#` at
 * its start that means anything. (compactShell, which other scripts go through, would keep the
 * perl's comments: they are inside a quoted string, 9 KB of the loop.)
 */
export function remoteShellScript(): string {
  loopText ??= scriptBody(REMOTE_SHELL_SCRIPT)
    .split("\n")
    .map((line) => line.trimStart())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .join("\n");
  return loopText;
}

/**
 * Returns the command line that starts the loop; the login shell expands $SSH_CONNECTION before
 * any sudo prefix (`sudo` words, already quoted) resets the environment.
 */
export function remoteShellCommand(sudoPrefix: readonly string[] = []): string {
  const loop = quoteArgv(["sh", "-c", remoteShellScript(), "remote-shell.sh"]);
  const prefix = sudoPrefix.length > 0 ? `${quoteArgv(sudoPrefix)} ` : "";
  return `${prefix}${loop} "$SSH_CONNECTION"`;
}

/**
 * Returns the command line of one request for argv: `exec` runs the program itself, never a
 * builtin or a function of the loop's shell, and starts no process besides it; the loop already
 * runs with LC_ALL=C, which a session of its own gets from `env`. A kept script declared to run
 * in the shell (declareRunsInShell) runs in the request's own subshell instead (shellRequestLine).
 */
export function remoteShellRequest(argv: readonly string[]): string {
  return shellRequestLine(argv, quoteArgv);
}

/**
 * The longest command sent as one line: the loop reads a line with the shell's `read`, a byte
 * per system call, which beats starting `dd` up to about this length.
 */
export const MAX_LINE_COMMAND = 2048;

// Printable ASCII only: a byte is a character in every shell's ${#var}, whatever its locale.
const LINE_COMMAND = /^[\x20-\x7e]*$/;

/**
 * A host lock as a release names it (host/lock.ts): TOKEN/FIRSTKEY, the operation's token (hex
 * digits) and the first of its keys, whose fifo the holder reads; the loop checks it the same way.
 */
export const LOCK_REF = /^[0-9a-f]{1,64}\/[A-Za-z0-9_.-]{1,80}$/;

/** Returns a new nonce for one request: 32 random hex digits, which end its reply. */
export function newNonce(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Returns the frame of one request: a header with both lengths, the reply's nonce and the host
 * lock to release once the command ends (if any, LOCK_REF), the command, stdin, "\n". A short
 * command of printable ASCII goes as a line ("L"), which the loop reads without starting dd.
 */
export function encodeRequest(
  command: string,
  stdin: Buffer,
  nonce: string,
  release?: string,
): Buffer {
  if (!/^[0-9a-f]{32}$/.test(nonce)) throw new Error("remote shell: a nonce is 32 hex digits");
  if (release !== undefined && !LOCK_REF.test(release)) {
    throw new Error(`invalid host lock reference ${release}`);
  }
  const tail = release !== undefined ? ` ${release}` : "";
  if (command.length <= MAX_LINE_COMMAND && LINE_COMMAND.test(command)) {
    return Buffer.concat([
      Buffer.from(`L ${command.length} ${stdin.length} ${nonce}${tail}\n${command}\n`, "ascii"),
      stdin,
      Buffer.from("\n", "ascii"),
    ]);
  }
  const cmd = Buffer.from(command, "utf8");
  return Buffer.concat([
    Buffer.from(`R ${cmd.length} ${stdin.length} ${nonce}${tail}\n`, "ascii"),
    cmd,
    stdin,
    Buffer.from("\n", "ascii"),
  ]);
}

/** Returns the frame that gives the loop a script body to keep under its hash. */
export function encodeScript(script: CachedScript): Buffer {
  const body = Buffer.from(script.body, "utf8");
  return Buffer.concat([
    Buffer.from(`S ${script.hash} ${body.length}\n`, "ascii"),
    body,
    Buffer.from("\n", "ascii"),
  ]);
}

/** What the shell said when it started. */
export interface ShellHello {
  /** The loop's process id on the host. */
  readonly pid: number;
  /** $SSH_CONNECTION as the login saw it ("" when unset). */
  readonly sshConnection: string;
}

/** One command's result from the shell; a killed command says 128 + the signal. */
export interface ShellReply {
  readonly code: number;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

interface FrameEvents {
  hello(h: ShellHello): void;
  started(): void;
  reply(r: ShellReply): void;
  invalid(why: string): void;
}

/** Splits the shell's stdout into hello, started marks and replies; survives any chunking. */
export class FrameReader {
  private state: "hello" | "started" | "stdout" | "code" | "stderr" | "end" | "broken" = "hello";
  private line: Buffer = Buffer.alloc(0);
  private nonce: Buffer | undefined;
  private code = 0;
  // the output before the nonce: parts, and the last bytes that may be the nonce's beginning
  private parts: Buffer[] = [];
  private tail: Buffer = Buffer.alloc(0);
  private stdout: Buffer = Buffer.alloc(0);
  private stderr: Buffer = Buffer.alloc(0);

  constructor(private readonly on: FrameEvents) {}

  /** Says which nonce ends the next reply (the request's). */
  expect(nonce: string): void {
    this.nonce = Buffer.from(nonce, "ascii");
  }

  /** Handles the next piece of stdout. */
  push(chunk: Buffer): void {
    let buf = chunk;
    while (buf.length > 0 && this.state !== "broken") {
      if (this.state === "stdout" || this.state === "stderr") {
        buf = this.scan(buf);
        continue;
      }
      if (this.state === "started") {
        if (buf[0] !== 0x2e) return this.fail(`expected the started mark, got byte ${buf[0]}`);
        if (!this.nonce) return this.fail("a started mark for no request");
        buf = buf.subarray(1);
        this.state = "stdout";
        this.on.started();
        continue;
      }
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        this.line = Buffer.concat([this.line, buf]);
        if (this.line.length > MAX_LINE) this.fail("a header line without an end");
        return;
      }
      const text = Buffer.concat([this.line, buf.subarray(0, nl)]).toString("latin1");
      this.line = Buffer.alloc(0);
      buf = buf.subarray(nl + 1);
      if (this.state === "hello") this.readHello(text);
      else if (this.state === "code") this.readCode(text);
      else this.readEnd(text);
    }
  }

  // Takes output up to the nonce; returns what follows it (nothing while it has not come).
  private scan(chunk: Buffer): Buffer {
    const nonce = this.nonce as Buffer;
    const hay = this.tail.length > 0 ? Buffer.concat([this.tail, chunk]) : chunk;
    const at = hay.indexOf(nonce);
    if (at < 0) {
      const keep = Math.max(0, hay.length - (nonce.length - 1));
      if (keep > 0) this.parts.push(hay.subarray(0, keep));
      this.tail = hay.subarray(keep);
      return Buffer.alloc(0);
    }
    if (at > 0) this.parts.push(hay.subarray(0, at));
    const out = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    this.parts = [];
    this.tail = Buffer.alloc(0);
    if (this.state === "stdout") {
      this.stdout = out;
      this.state = "code";
    } else {
      this.stderr = out;
      this.state = "end";
    }
    return hay.subarray(at + nonce.length);
  }

  private readHello(text: string): void {
    if (!text.startsWith(HELLO)) return this.fail(`unexpected first line ${JSON.stringify(text)}`);
    const rest = text.slice(HELLO.length);
    const space = rest.indexOf(" ");
    const pid = Number(space < 0 ? rest : rest.slice(0, space));
    if (!Number.isSafeInteger(pid) || pid <= 0) return this.fail("a hello without a pid");
    this.state = "started";
    this.on.hello({ pid, sshConnection: space < 0 ? "" : rest.slice(space + 1) });
  }

  // " CODE" after stdout's nonce
  private readCode(text: string): void {
    const m = /^ (\d+)$/.exec(text);
    if (!m) return this.fail(`unexpected exit code ${JSON.stringify(text.slice(0, 80))}`);
    this.code = Number(m[1]);
    this.state = "stderr";
  }

  // nothing between stderr's nonce and its newline
  private readEnd(text: string): void {
    if (text !== "") return this.fail(`unexpected reply end ${JSON.stringify(text.slice(0, 80))}`);
    const reply = { code: this.code, stdout: this.stdout, stderr: this.stderr };
    this.stdout = Buffer.alloc(0);
    this.stderr = Buffer.alloc(0);
    this.nonce = undefined;
    this.state = "started";
    this.on.reply(reply);
  }

  private fail(why: string): void {
    this.state = "broken";
    this.on.invalid(why);
  }
}

/** The transport under a shell: bytes to its stdin, and closing it (killing the loop). */
export interface ShellTransport {
  write(chunk: Buffer): void;
  /** Kills the loop and closes the transport; the owner then calls ended(). */
  destroy(): void;
}

/** Why a request got no reply; `started` says whether the command may have run. */
export class ShellEndedError extends Error {
  constructor(
    message: string,
    readonly started: boolean,
  ) {
    super(message);
    this.name = "ShellEndedError";
  }
}

/** How long a killed command's reply may take before the whole shell is closed. */
export const KILL_GRACE_MS = 5000;

interface Pending {
  readonly resolve: (r: ShellReply) => void;
  readonly reject: (e: ShellEndedError) => void;
  started: boolean;
  killed: boolean;
  graceTimer?: NodeJS.Timeout;
}

/** A running remote-shell.sh loop: one request at a time. */
export class RemoteShell {
  /** Resolves with the hello; rejects when the loop ends or says something else first. */
  readonly hello: Promise<ShellHello>;
  private helloSettle: { resolve: (h: ShellHello) => void; reject: (e: Error) => void };
  private readonly reader: FrameReader;
  private pending: Pending | undefined;
  private endedWith: string | undefined;
  private helloSeen = false;
  // the script bodies this loop was sent (it keeps them until it ends)
  private readonly kept = new Set<string>();
  // whether the last command's watcher still waits for its "\n"
  private owesEnd = false;

  constructor(private readonly transport: ShellTransport) {
    let settle!: { resolve: (h: ShellHello) => void; reject: (e: Error) => void };
    this.hello = new Promise<ShellHello>((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.hello.catch(() => undefined);
    this.helloSettle = settle;
    this.reader = new FrameReader({
      hello: (h) => {
        this.helloSeen = true;
        this.helloSettle.resolve(h);
      },
      started: () => {
        if (this.pending) this.pending.started = true;
      },
      reply: (r) => {
        const p = this.pending;
        this.pending = undefined;
        if (!p) return this.broken("a reply nobody asked for");
        if (p.graceTimer) clearTimeout(p.graceTimer);
        // the command is over: the watcher goes when it reads "\n" (after a kill it is gone),
        // which rides in front of the next request's write, not in a packet of its own
        this.owesEnd = !p.killed;
        p.resolve(r);
      },
      invalid: (why) => this.broken(why),
    });
  }

  /** Returns whether the loop is still there. */
  get alive(): boolean {
    return this.endedWith === undefined;
  }

  /** Returns whether a request is running. */
  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** Feeds the loop's stdout. */
  push(chunk: Buffer): void {
    this.reader.push(chunk);
  }

  /** Marks the loop gone (its transport closed); a running request is rejected. */
  ended(why: string): void {
    if (this.endedWith !== undefined) return;
    this.endedWith = why;
    if (!this.helloSeen) this.helloSettle.reject(new Error(why));
    const p = this.pending;
    this.pending = undefined;
    if (p) {
      if (p.graceTimer) clearTimeout(p.graceTimer);
      p.reject(new ShellEndedError(why, p.started));
    }
  }

  /**
   * Runs one command line with stdin; rejects with ShellEndedError when the loop goes first. The
   * scripts it refers to in the loop's cache go first, in the same write, if this loop lacks them.
   * With `release`, the loop releases that host lock once the command ends, before the reply.
   */
  request(
    command: string,
    stdin: Buffer,
    scripts: readonly CachedScript[] = [],
    release?: string,
  ): Promise<ShellReply> {
    if (this.endedWith !== undefined) {
      return Promise.reject(new ShellEndedError(this.endedWith, false));
    }
    if (this.pending) return Promise.reject(new Error("remote shell: one request at a time"));
    return new Promise<ShellReply>((resolve, reject) => {
      this.pending = { resolve, reject, started: false, killed: false };
      const frames: Buffer[] = [];
      if (this.owesEnd) frames.push(Buffer.from("\n"));
      this.owesEnd = false;
      for (const s of scripts) {
        if (this.kept.has(s.hash)) continue;
        this.kept.add(s.hash);
        frames.push(encodeScript(s));
      }
      const nonce = newNonce();
      this.reader.expect(nonce);
      frames.push(encodeRequest(command, stdin, nonce, release));
      this.transport.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
    });
  }

  /**
   * Kills the running command and what it started (the reply then comes with code 137); when
   * no reply comes within KILL_GRACE_MS the loop itself is destroyed.
   */
  kill(): void {
    const p = this.pending;
    if (!p || p.killed) return;
    p.killed = true;
    this.transport.write(Buffer.from("K\n"));
    p.graceTimer = setTimeout(() => {
      this.destroy();
    }, KILL_GRACE_MS);
    p.graceTimer.unref();
  }

  /** Sends a one-way frame ("U TOKEN/FIRSTKEY\n"), read by the loop or a running command's watcher. */
  notify(frame: Buffer): void {
    if (this.endedWith === undefined) this.transport.write(frame);
  }

  /** Kills the loop (its transport); the owner's close handling then calls ended(). */
  destroy(): void {
    this.transport.destroy();
  }

  private broken(why: string): void {
    this.transport.destroy();
    this.ended(`the remote shell said something unexpected: ${why}`);
  }
}
