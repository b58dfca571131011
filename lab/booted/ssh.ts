// SSH to booted lab hosts with the real OpenSSH client, the host key pinned in a known_hosts file.
import * as net from "node:net";
import {
  formatArgv,
  quoteShellWord,
  runLocal,
  sleep,
  type ExecOptions,
  type ExecResult,
} from "./run";

export interface SshTarget {
  address: string;
  port: number;
  user: string;
  privateKeyPath: string;
  /** A known_hosts file holding the host's key: anything else is refused. */
  knownHostsPath: string;
}

const POLL_MS = 100;

/** Returns the ssh argv that runs argv on target (each word quoted for the remote shell). */
export function sshArgv(target: SshTarget, argv: readonly string[], connectTimeoutS = 3): string[] {
  return [
    "ssh",
    "-F",
    "/dev/null",
    "-i",
    target.privateKeyPath,
    "-p",
    String(target.port),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${target.knownHostsPath}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "HostKeyAlgorithms=ssh-ed25519",
    "-o",
    `ConnectTimeout=${connectTimeoutS}`,
    "-o",
    "LogLevel=ERROR",
    `${target.user}@${target.address}`,
    "--",
    argv.map(quoteShellWord).join(" "),
  ];
}

/** Runs argv on target over SSH; ssh's own failures exit 255. */
export function runSsh(
  target: SshTarget,
  argv: readonly string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  return runLocal(sshArgv(target, argv), opts);
}

/** Returns whether a TCP connection to address:port is accepted within timeoutMs. */
export function probeTcp(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Returns the milliseconds until `argv` (default `true`) ran with exit 0 over SSH on target,
 * polling the TCP port first so that a host still booting costs no ssh process.
 */
export async function waitForSshCommand(
  target: SshTarget,
  timeoutMs: number,
  argv: readonly string[] = ["true"],
  describe: () => Promise<string> = async () => "",
): Promise<number> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last = "the TCP port never accepted a connection";
  while (Date.now() < deadline) {
    if (await probeTcp(target.address, target.port, 500)) {
      const r = await runSsh(target, argv, { timeoutMs: 10_000 }).catch((e: Error) => ({
        code: 255,
        stdout: "",
        stderr: e.message,
      }));
      if (r.code === 0) return Date.now() - started;
      last = `${formatArgv(argv)} exited ${r.code}: ${(r.stderr || r.stdout).trim() || "no output"}`;
    }
    await sleep(POLL_MS);
  }
  const context = await describe();
  throw new Error(
    `ssh ${target.user}@${target.address}:${target.port} did not succeed within ${timeoutMs} ms; ` +
      `last: ${last}${context === "" ? "" : `; ${context}`}`,
  );
}
