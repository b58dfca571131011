import { logInfo } from "../log";
import type { Connection } from "./connection";
import { quoteArgv } from "./quote";

/** How a command is wrapped on the host. */
export type SudoMode = "none" | "nopasswd" | "password";

// Exits 0 only when sudo needs no password at all (-k ignores cached credentials).
const SUDO_PROBE = ["sudo", "-n", "-k", "true"] as const;

/** The probe's command line; it runs without sudo wrapping and without stdin. */
export const SUDO_PROBE_COMMAND = quoteArgv(SUDO_PROBE);

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

/** Returns the bytes written to the channel before the command's own stdin. */
export function sudoStdinPrefix(conn: Pick<Connection, "sudo">, mode: SudoMode): Buffer[] {
  if (mode === "password" && typeof conn.sudo === "object") {
    return [Buffer.from(`${conn.sudo.password}\n`, "utf8")];
  }
  return [];
}
