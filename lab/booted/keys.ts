// SSH keys of the booted lab: one client key for the whole lab, one host key per host.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { exists, runOk } from "./run";

export interface KeyPair {
  privateKeyPath: string;
  privateKey: string;
  /** "ssh-ed25519 AAAA…" without a comment. */
  publicKey: string;
}

/** Returns the ed25519 key pair at file, generating it first (atomically) when it is missing. */
export async function ensureKeyPair(file: string, comment: string): Promise<KeyPair> {
  if (!(await exists(file)) || !(await exists(`${file}.pub`))) {
    const dir = path.dirname(file);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}`);
    await fs.rm(tmp, { force: true });
    await fs.rm(`${tmp}.pub`, { force: true });
    await runOk(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", tmp]);
    // The public half first: a reader that sees the private file finds both.
    await fs.rename(`${tmp}.pub`, `${file}.pub`);
    await fs.rename(tmp, file);
  }
  return {
    privateKeyPath: file,
    privateKey: await fs.readFile(file, "utf8"),
    publicKey: publicKeyLine(await fs.readFile(`${file}.pub`, "utf8")),
  };
}

/** Returns "type base64" of an OpenSSH public key file's content. */
export function publicKeyLine(content: string): string {
  const [type, key] = content.trim().split(/\s+/);
  if (type === undefined || key === undefined) {
    throw new Error(`not an OpenSSH public key: ${JSON.stringify(content.slice(0, 80))}`);
  }
  return `${type} ${key}`;
}
