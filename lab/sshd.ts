// Each lab host's sshd: its configuration, host key and readiness, and the lab's client key.
import * as net from "node:net";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { isProcessAlive, runOk, sleep, tail } from "./exec";

const SSHD_READY_TIMEOUT_MS = 20_000;

/** Returns the sshd_config of a lab host listening on address:22. */
export function renderSshdConfig(stateDir: string, address: string): string {
  // OpenSSH's default MaxStartups (10:30:100) and MaxSessions (10) are kept on purpose: real
  // hosts refuse bursts of connections and channels, and the provider must cope with that.
  return [
    `ListenAddress ${address}:22`,
    "AddressFamily inet",
    `HostKey ${stateDir}/ssh_host_ed25519_key`,
    "PidFile /run/sshd.pid",
    "PermitRootLogin yes",
    "PubkeyAuthentication yes",
    "PasswordAuthentication yes",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "AuthorizedKeysFile .ssh/authorized_keys",
    "LogLevel VERBOSE",
    "PrintMotd no",
    "PrintLastLog no",
    "X11Forwarding no",
    "Subsystem sftp /usr/lib/openssh/sftp-server",
    "",
  ].join("\n");
}

/** Resolves once something accepts TCP on address:port and sends an SSH banner. */
function probeSshBanner(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: address, port });
    let buf = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on("data", (b: Buffer) => {
      buf += b.toString("latin1");
      if (buf.startsWith("SSH-2.0-")) done(true);
    });
    sock.on("error", () => done(false));
    sock.on("close", () => done(false));
  });
}

/** Resolves once the sshd of a lab host answers with an SSH banner; throws with its log if not. */
export async function waitForSshd(
  host: { netns: string; sshdPid: number },
  address: string,
  stateDir: string,
): Promise<void> {
  const deadline = Date.now() + SSHD_READY_TIMEOUT_MS;
  for (;;) {
    if (!(await isProcessAlive(host.sshdPid))) break;
    if (await probeSshBanner(address, 22, 1000)) return;
    if (Date.now() > deadline) break;
    await sleep(50);
  }
  const log = await fs.readFile(path.join(stateDir, "sshd.log"), "utf8").catch(() => "");
  const stderr = await fs.readFile(path.join(stateDir, "sshd.stderr"), "utf8").catch(() => "");
  const alive = await isProcessAlive(host.sshdPid);
  throw new Error(
    `lab ${host.netns}: sshd (pid ${host.sshdPid}, ${alive ? "running" : "exited"}) did not ` +
      `accept TCP on ${address}:22 within ${SSHD_READY_TIMEOUT_MS} ms; sshd log: ` +
      `${tail(log + stderr)}`,
  );
}

/** Creates an ed25519 key pair at file and file.pub. */
export async function generateKey(file: string, comment: string): Promise<void> {
  await runOk(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
}

/** Returns the SHA256 fingerprint of a public key file. */
export async function keyFingerprint(pubFile: string): Promise<string> {
  const out = await runOk(["ssh-keygen", "-l", "-E", "sha256", "-f", pubFile]);
  const fp = out.trim().split(/\s+/)[1];
  if (fp === undefined || !fp.startsWith("SHA256:")) {
    throw new Error(`ssh-keygen -lf ${pubFile} printed ${JSON.stringify(out)}`);
  }
  return fp;
}

/** Returns "type base64" of an OpenSSH public key, without its comment. */
export function publicKeyLine(pubFileContent: string): string {
  const [type, key] = pubFileContent.trim().split(/\s+/);
  if (type === undefined || key === undefined) {
    throw new Error(`not an OpenSSH public key: ${JSON.stringify(pubFileContent)}`);
  }
  return `${type} ${key}`;
}
