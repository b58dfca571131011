import { randomBytes } from "node:crypto";
import { logInfo } from "../log";
import { writeAllFeed, type StdinFeed, type StdinSink } from "./channels";
import type { Connection } from "./connection";
import { quoteArgv } from "./quote";

// How commands run through sudo. With a password, the password goes only to a prompt that sudo
// printed (a unique -p string), and the command's own stdin only after the command has started:
// where sudoers needs no password for the command, nothing it reads is ever the password.

/** How a command is wrapped on the host. */
export type SudoMode = "none" | "nopasswd" | "password";

// Exits 0 only when sudo needs no password at all (-k ignores cached credentials).
const SUDO_PROBE = ["sudo", "-n", "-k", "true"] as const;

/** The probe's command line; it runs without sudo wrapping and without stdin. */
export const SUDO_PROBE_COMMAND = quoteArgv(SUDO_PROBE);

/** The two strings a password run watches stderr for; random, so no command prints them by chance. */
export interface SudoMarks {
  /** What sudo prints (-p) when it reads a password. */
  readonly prompt: string;
  /** What the wrapped command prints on stderr just before it starts. */
  readonly ready: string;
}

/** Returns fresh marks; no '%', which sudo would expand in a prompt. */
export function newSudoMarks(): SudoMarks {
  const token = randomBytes(12).toString("hex");
  return {
    prompt: `[pulumi-hypervisor sudo ${token}] password:`,
    ready: `[pulumi-hypervisor ready ${token}]`,
  };
}

// Prints the ready mark ($0) on stderr, then becomes the command; runs under env, so sudoers
// rules still see `env` as the command, as they did before.
const ANNOUNCE_SCRIPT = 'printf "%s\\n" "$0" >&2; exec "$@"';

/** Returns the command line sent for argv: `env LC_ALL=C` for stable output, in sudo as asked. */
export function buildRemoteCommand(
  argv: readonly string[],
  sudo: SudoMode,
  marks?: SudoMarks,
): string {
  const command = ["env", "LC_ALL=C", ...argv];
  switch (sudo) {
    case "none":
      return quoteArgv(command);
    case "nopasswd":
      return quoteArgv(["sudo", "-n", "--", ...command]);
    case "password": {
      if (!marks) throw new Error("a password sudo command needs its prompt marks");
      // -S reads the password from stdin after printing the prompt on stderr; -k asks for it
      // even when sudo has cached credentials, so the prompt is always the one we expect
      const announced = ["env", "LC_ALL=C", "sh", "-c", ANNOUNCE_SCRIPT, marks.ready, ...argv];
      return quoteArgv(["sudo", "-S", "-p", marks.prompt, "-k", "--", ...announced]);
    }
  }
}

/** Returns the mode a connection fixes without asking the host, or undefined when it must probe. */
export function fixedSudoMode(conn: Pick<Connection, "sudo">): SudoMode | undefined {
  if (conn.sudo === false) return "none";
  if (conn.sudo === true) return "nopasswd";
  return undefined;
}

/** Returns the mode the probe's exit code means; logs when a given password will not be sent. */
export function sudoModeFromProbe(label: string, exitCode: number | undefined): SudoMode {
  if (exitCode !== 0) return "password";
  logInfo(`${label}: sudo needs no password here; connection.sudo.password is not sent`);
  return "nopasswd";
}

/**
 * Returns the feed for a password run: the password once, when sudo's prompt appears; the
 * command's stdin when its ready mark appears. A second prompt means the password was refused:
 * stdin is closed so sudo gives up, and the password is never sent twice.
 */
export function sudoPasswordFeed(
  password: string,
  stdin: readonly Buffer[],
  marks: SudoMarks,
): StdinFeed {
  let seen = "";
  let prompts = 0;
  let done = false;
  return {
    open() {},
    stderr(text: string, sink: StdinSink) {
      if (done) return;
      seen += text;
      for (;;) {
        const promptAt = seen.indexOf(marks.prompt);
        const readyAt = seen.indexOf(marks.ready);
        if (promptAt >= 0 && (readyAt < 0 || promptAt < readyAt)) {
          seen = seen.slice(promptAt + marks.prompt.length);
          prompts++;
          if (prompts > 1) {
            done = true;
            sink.end();
            return;
          }
          sink.write(Buffer.from(`${password}\n`, "utf8"));
          continue;
        }
        if (readyAt >= 0) {
          done = true;
          for (const chunk of stdin) sink.write(chunk);
          sink.end();
          return;
        }
        // keep only what could be the start of a mark split across pieces of stderr
        const keep = Math.max(marks.prompt.length, marks.ready.length);
        if (seen.length > keep) seen = seen.slice(-keep);
        return;
      }
    },
    cleanStderr(stderr: string): string {
      return stderr.split(marks.prompt).join("").replace(`${marks.ready}\n`, "");
    },
  };
}

/** Returns how a run's stdin is fed in this mode (the password only ever to sudo's own prompt). */
export function stdinFeedFor(
  conn: Pick<Connection, "sudo">,
  mode: SudoMode,
  stdin: readonly Buffer[],
  marks: SudoMarks,
): StdinFeed {
  if (mode === "password" && typeof conn.sudo === "object") {
    return sudoPasswordFeed(conn.sudo.password, stdin, marks);
  }
  return writeAllFeed(stdin);
}

/** How a remote shell starts under sudo: the words before its `sh -c`, and its stdin feed. */
export interface ShellSudo {
  readonly prefix: readonly string[];
  readonly feed: StdinFeed;
  /** Returns whether sudo asked a second time (the password was refused). */
  refused(): boolean;
}

/**
 * Returns how a remote shell runs through sudo for this connection: not at all, `sudo -n`, or
 * `sudo -S` with the password sent once, only to sudo's own prompt (a second prompt closes stdin
 * so sudo gives up). The shell's stdin stays open: it carries the requests after that.
 */
export function shellSudo(conn: Pick<Connection, "sudo">, marks: SudoMarks): ShellSudo {
  const open: StdinFeed = { open() {} };
  if (conn.sudo === false) return { prefix: [], feed: open, refused: () => false };
  if (conn.sudo === true) return { prefix: ["sudo", "-n", "--"], feed: open, refused: () => false };
  const password = conn.sudo.password;
  let seen = "";
  let prompts = 0;
  return {
    prefix: ["sudo", "-S", "-p", marks.prompt, "-k", "--"],
    feed: {
      open() {},
      stderr(text: string, sink: StdinSink) {
        if (prompts > 1) return;
        seen += text;
        for (;;) {
          const at = seen.indexOf(marks.prompt);
          if (at < 0) break;
          seen = seen.slice(at + marks.prompt.length);
          prompts++;
          if (prompts > 1) {
            sink.end();
            return;
          }
          sink.write(Buffer.from(`${password}\n`, "utf8"));
        }
        if (seen.length > marks.prompt.length) seen = seen.slice(-marks.prompt.length);
      },
      cleanStderr: (stderr: string) => stderr.split(marks.prompt).join(""),
    },
    refused: () => prompts > 1,
  };
}
