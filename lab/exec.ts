// Processes on this machine: argv arrays run with a fixed environment, never through a shell
// string, and what the lab needs to know about pids (alive, started when).
import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string;
  timeoutMs?: number;
}

export interface LocalRunOptions extends ExecOptions {
  /** Variables added to the lab's fixed environment (PATH, HOME, LANG). */
  env?: Record<string, string>;
}

export const LAB_ENV: NodeJS.ProcessEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

const DEFAULT_EXEC_TIMEOUT_MS = 60_000;

/** Runs argv on the machine; resolves with its exit code (never rejects on a non-zero exit). */
export function runLocal(argv: readonly string[], opts: LocalRunOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runLocal: empty argv"));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const env = { ...LAB_ENV, ...opts.env };
    const child = spawn(file, args, { cwd: "/", env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    let exitCode: number | undefined;
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    // A command that exits before reading its stdin must not fail the call with EPIPE.
    child.stdin.on("error", () => undefined);
    const finish = (): void => {
      if (settled || exitCode === undefined) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({
        code: exitCode,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    };
    let drain: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(
        new Error(
          `${quoteForMessage(argv)} timed out after ${timeoutMs} ms; stderr: ` +
            tail(Buffer.concat(err).toString("utf8")),
        ),
      );
    }, timeoutMs);
    child.on("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${quoteForMessage(argv)}: ${e.message}`));
    });
    child.on("exit", (code, signal) => {
      exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
      // A daemon the command started may hold the pipes open: give the output a moment, then go.
      drain = setTimeout(finish, 250);
    });
    child.on("close", finish);
    child.stdin.end(opts.stdin ?? "");
  });
}

/** Returns the stdout of argv run on the machine; rejects with the command and its stderr. */
export async function runOk(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await runLocal(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${quoteForMessage(argv)} exited ${r.code}: ${tail(r.stderr || r.stdout)}`);
  }
  return r.stdout;
}

/** Returns argv as one line for a message, single-quoting what a shell would split. */
export function quoteForMessage(argv: readonly string[]): string {
  return argv.map(quoteShellWord).join(" ");
}

/** Returns word quoted for a POSIX shell ('…' with '\''), bare when it has only safe characters. */
export function quoteShellWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return "'" + word.replace(/'/g, "'\\''") + "'";
}

/** Returns the last lines of text, or "no output". */
export function tail(text: string, lines = 20): string {
  const t = text.trim();
  if (t === "") return "no output";
  return t.split("\n").slice(-lines).join("\n");
}

/** Returns a promise that resolves after ms. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Returns the fields of a /proc/PID/stat text after the command, the state first (field 3): the
 * command is in parentheses and may contain spaces and parentheses, so they start after the last ")".
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Returns the start time of pid (clock ticks since boot), or undefined when it is gone. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const fields = statFields(await fs.readFile(`/proc/${pid}/stat`, "utf8"));
    if (fields[0] === "Z") return undefined; // exited, waiting for its parent to reap it
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Returns whether pid is a live (not zombie) process. */
export async function isProcessAlive(pid: number): Promise<boolean> {
  return (await processStartTime(pid)) !== undefined;
}

/** Returns whether p exists. */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Returns the absolute path of program in the lab PATH, or undefined. */
export async function findProgram(program: string): Promise<string | undefined> {
  for (const dir of (LAB_ENV.PATH ?? "").split(":")) {
    const candidate = path.join(dir, program);
    try {
      await fs.access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
