// Local processes for booted lab hosts: every command is an argv array run without a shell.
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** The fixed environment of every command the booted lab runs. */
export const LAB_ENV: NodeJS.ProcessEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

/** Returns argv as one line for messages, each word in POSIX single quotes where needed. */
export function formatArgv(argv: readonly string[]): string {
  return argv.map(quoteShellWord).join(" ");
}

/** Returns word quoted for a POSIX shell ('…' with '\''), bare when it has only safe characters. */
export function quoteShellWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return "'" + word.replace(/'/g, "'\\''") + "'";
}

/** Returns the last lines of text, or "no output". */
export function tailOf(text: string, lines = 15): string {
  const t = text.trim();
  return t === "" ? "no output" : t.split("\n").slice(-lines).join("\n");
}

/** Returns after ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs argv on the machine; resolves with its exit code, output and errors (never on exit != 0). */
export function runLocal(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runLocal: empty argv"));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: "/", env: LAB_ENV, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    // A command that exits before reading its stdin must not fail the call with EPIPE.
    child.stdin.on("error", () => undefined);
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      const stderr = tailOf(Buffer.concat(err).toString("utf8"));
      reject(new Error(`${formatArgv(argv)} timed out after ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${formatArgv(argv)}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code: code ?? (signal === null ? 1 : 128 + signalNumber(signal)),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    child.stdin.end(opts.stdin ?? "");
  });
}

/** Runs argv on the machine and returns its stdout; rejects naming the command when it fails. */
export async function runOk(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await runLocal(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${formatArgv(argv)} exited ${r.code}: ${tailOf(r.stderr || r.stdout)}`);
  }
  return r.stdout;
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };
  return numbers[signal] ?? 0;
}

/** Returns whether pid is a live process that is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Returns whether p exists. */
export async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

/** Returns the path of program in the lab's PATH, or undefined when it is not installed. */
export async function whichProgram(program: string): Promise<string | undefined> {
  for (const dir of (LAB_ENV.PATH ?? "").split(":")) {
    const p = `${dir}/${program}`;
    if (await exists(p)) return p;
  }
  return undefined;
}
