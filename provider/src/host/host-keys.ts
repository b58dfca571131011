import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { reasonOf, SshConnectionError } from "../errors";
import { logWarn } from "../log";
import type { Connection } from "./connection";

// SSH host keys: OpenSSH public key lines, SHA256 fingerprints as ssh-keygen prints them,
// known_hosts lookups (plain, "[host]:port", wildcards, negations, hashed "|1|"), and the check a
// connection's settings ask for (pinned key, known_hosts file, or none at all).

/** An SSH public key: its type name and its wire-format blob. */
export interface PublicKey {
  readonly type: string;
  readonly blob: Buffer;
}

/** Accepts a key (ok) or refuses it with a secret-free sentence saying what was presented and expected. */
export type HostKeyVerdict =
  { readonly ok: true } | { readonly ok: false; readonly detail: string };

/** A pinned host key: its fingerprint, and its type when the pin was a full public key line. */
export interface HostKeyPin {
  readonly fingerprint: string;
  readonly type?: string;
}

/** One known_hosts line that applies to a host. */
export interface KnownHostsEntry {
  /** 1-based line number in the file. */
  readonly line: number;
  readonly marker?: "@revoked" | "@cert-authority";
  readonly key: PublicKey;
}

/** Returns the key type written at the start of a public key blob, or undefined if it has none. */
export function keyTypeOfBlob(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len < 1 || len > 64 || 4 + len > blob.length) return undefined;
  const type = blob.subarray(4, 4 + len).toString("latin1");
  return /^[A-Za-z0-9@._+-]+$/.test(type) ? type : undefined;
}

/** Returns the "SHA256:..." fingerprint of a key blob, exactly as `ssh-keygen -l` prints it. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Returns "SHA256:... (type)" for messages. */
export function describeKey(blob: Buffer): string {
  return `${fingerprintSha256(blob)} (${keyTypeOfBlob(blob) ?? "unknown type"})`;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

// A key is a type token followed by base64 whose decoded blob names the same type.
function keyAt(tokens: readonly string[], i: number): PublicKey | undefined {
  const type = tokens[i];
  const data = tokens[i + 1];
  if (type === undefined || data === undefined || !BASE64.test(data)) return undefined;
  const blob = Buffer.from(data, "base64");
  return keyTypeOfBlob(blob) === type ? { type, blob } : undefined;
}

/**
 * Returns the public key in an OpenSSH line ("ssh-ed25519 AAAA... comment"), also when the line
 * carries a known_hosts prefix (host patterns, marker); undefined when the line holds no key.
 */
export function parsePublicKeyLine(line: string): PublicKey | undefined {
  const tokens = line.trim().split(/\s+/);
  for (let i = 0; i + 1 < tokens.length; i++) {
    const key = keyAt(tokens, i);
    if (key) return key;
  }
  return undefined;
}

// Every parse of a connection checks its hostKey, and diff compares pins: a process sees a few
// distinct keys, each thousands of times, so each is decoded and hashed once. Pins are readonly,
// so every caller may share one.
const pins = new Map<string, HostKeyPin | undefined>();
const MAX_CACHED_PINS = 256;

/** Returns the pin that connection.hostKey describes, or undefined if it is neither form. */
export function parseHostKeyPin(hostKey: string): HostKeyPin | undefined {
  if (pins.has(hostKey)) return pins.get(hostKey);
  const pin = decodeHostKeyPin(hostKey);
  if (pins.size >= MAX_CACHED_PINS) pins.clear();
  pins.set(hostKey, pin);
  return pin;
}

function decodeHostKeyPin(hostKey: string): HostKeyPin | undefined {
  const text = hostKey.trim();
  const fp = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(text);
  if (fp) return { fingerprint: `SHA256:${fp[1]}` };
  const key = parsePublicKeyLine(text);
  return key ? { fingerprint: fingerprintSha256(key.blob), type: key.type } : undefined;
}

/** Returns whether the presented key blob is the one connection.hostKey pins. */
export function checkPinnedHostKey(presented: Buffer, pin: HostKeyPin): HostKeyVerdict {
  if (fingerprintSha256(presented) === pin.fingerprint) return { ok: true };
  const expected = pin.type ? `${pin.fingerprint} (${pin.type})` : pin.fingerprint;
  return {
    ok: false,
    detail: `presented ${describeKey(presented)}, expected ${expected} from connection.hostKey`,
  };
}

/** Returns the name known_hosts files use for a host: "host" on port 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

// OpenSSH's match_pattern: "*" any run, "?" one character, case-insensitive.
function matchWildcard(name: string, pattern: string): boolean {
  const re = pattern
    .split("")
    .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[\\^$.|+(){}[\]]/g, "\\$&")))
    .join("");
  return new RegExp(`^${re}$`, "is").test(name);
}

// A comma-separated pattern list matches when some pattern does and no "!pattern" does.
function matchPatternList(name: string, list: string): boolean {
  let matched = false;
  for (const raw of list.split(",")) {
    if (raw === "") continue;
    const negated = raw.startsWith("!");
    const pattern = negated ? raw.slice(1) : raw;
    if (matchWildcard(name, pattern)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

// Hashed entries are "|1|base64(salt)|base64(HMAC-SHA1(salt, name))", as written by ssh-keygen -H.
function matchHashed(name: string, entry: string): boolean {
  const parts = entry.split("|");
  if (parts.length !== 4 || parts[0] !== "" || parts[1] !== "1") return false;
  const salt = Buffer.from(parts[2] ?? "", "base64");
  const want = Buffer.from(parts[3] ?? "", "base64");
  const got = createHmac("sha1", salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Returns the known_hosts entries (with markers) whose host patterns match host:port. */
export function findKnownHosts(content: string, host: string, port: number): KnownHostsEntry[] {
  const name = knownHostsName(host, port).toLowerCase();
  const entries: KnownHostsEntry[] = [];
  content.split(/\r?\n/).forEach((text, index) => {
    const tokens = text.trim().split(/\s+/);
    if (tokens[0] === undefined || tokens[0] === "" || tokens[0].startsWith("#")) return;
    let marker: KnownHostsEntry["marker"];
    if (tokens[0] === "@revoked" || tokens[0] === "@cert-authority") {
      marker = tokens[0];
      tokens.shift();
    } else if (tokens[0].startsWith("@")) {
      return;
    }
    const hosts = tokens[0];
    const key = keyAt(tokens, 1);
    if (hosts === undefined || !key) return;
    const matches = hosts.startsWith("|")
      ? matchHashed(name, hosts)
      : matchPatternList(name, hosts);
    if (!matches) return;
    entries.push(marker ? { line: index + 1, marker, key } : { line: index + 1, key });
  });
  return entries;
}

/**
 * Returns whether a known_hosts file accepts the presented key for host:port. `content` is
 * undefined when the file does not exist; `source` names the file in the refusal.
 */
export function checkKnownHosts(
  presented: Buffer,
  content: string | undefined,
  host: string,
  port: number,
  source: string,
): HostKeyVerdict {
  const name = knownHostsName(host, port);
  const entries = content === undefined ? [] : findKnownHosts(content, host, port);
  const same = (e: KnownHostsEntry) => e.key.blob.equals(presented);
  const revoked = entries.find((e) => e.marker === "@revoked" && same(e));
  if (revoked) {
    return {
      ok: false,
      detail: `presented ${describeKey(presented)} is marked @revoked in ${source} line ${revoked.line}`,
    };
  }
  // @cert-authority lines vouch for certificates, which this client does not accept.
  const plain = entries.filter((e) => e.marker === undefined);
  if (plain.some(same)) return { ok: true };
  if (plain.length === 0) {
    const where = content === undefined ? `${source} (file does not exist)` : source;
    return {
      ok: false,
      detail:
        `presented ${describeKey(presented)}, no entry for ${name} in ${where}; ` +
        `add the host's key there or set connection.hostKey`,
    };
  }
  const expected = plain
    .map((e) => `${fingerprintSha256(e.key.blob)} (${e.key.type}) from ${source} line ${e.line}`)
    .join(" or ");
  return { ok: false, detail: `presented ${describeKey(presented)}, expected ${expected}` };
}

/** Returns the key types of the known_hosts entries that could accept a key for host:port. */
export function knownHostKeyTypes(content: string, host: string, port: number): string[] {
  const types = findKnownHosts(content, host, port)
    .filter((e) => e.marker === undefined)
    .map((e) => e.key.type);
  return [...new Set(types)];
}

const ALGORITHMS_OF_TYPE: Readonly<Record<string, readonly string[]>> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
};

/**
 * Returns the host key algorithms to prefer for expected key types, so a server with several host
 * keys presents the one we know (as OpenSSH orders HostKeyAlgorithms by known_hosts).
 */
export function hostKeyAlgorithmsFor(types: readonly string[]): string[] {
  return [...new Set(types.flatMap((t) => ALGORITHMS_OF_TYPE[t] ?? []))];
}

/** How a dial verifies the key a server presents, and which key types to ask for first. */
export interface HostKeyCheck {
  readonly verify: (blob: Buffer) => HostKeyVerdict;
  readonly preferTypes: readonly string[];
}

/** The largest known_hosts file read; OpenSSH's own for thousands of hosts is a few MiB. */
export const MAX_KNOWN_HOSTS_BYTES = 16 * 1024 * 1024;

/**
 * Returns a known_hosts file's text, or undefined when it does not exist. Refuses anything but a
 * regular file of at most MAX_KNOWN_HOSTS_BYTES: a FIFO would block the read forever and
 * /dev/zero would never end. Opened non-blocking (so a FIFO does not block the open either) and
 * checked on the open handle, so the file checked is the file read.
 */
export async function readKnownHostsFile(file: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error("it is not a regular file");
    if (stat.size > MAX_KNOWN_HOSTS_BYTES) {
      throw new Error(`it is larger than ${MAX_KNOWN_HOSTS_BYTES / 1024 / 1024} MiB`);
    }
    // stop one chunk past the limit, in case the file grew since the stat
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const { bytesRead, buffer } = await handle.read(Buffer.alloc(64 * 1024), 0, 64 * 1024, null);
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      length += bytesRead;
      if (length > MAX_KNOWN_HOSTS_BYTES) {
        throw new Error(`it is larger than ${MAX_KNOWN_HOSTS_BYTES / 1024 / 1024} MiB`);
      }
    }
    return Buffer.concat(chunks).toString("utf8");
  } finally {
    await handle.close();
  }
}

function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

/**
 * Returns the host key check a connection asks for: its pinned hostKey, else no check when
 * insecureIgnoreHostKey is set (with a warning), else its known_hosts file (~/.ssh/known_hosts).
 */
export async function hostKeyCheckFor(conn: Connection, label: string): Promise<HostKeyCheck> {
  const { host, port, hostKey } = conn;
  if (hostKey !== undefined) {
    const pin = parseHostKeyPin(hostKey);
    if (!pin) {
      throw new SshConnectionError(
        label,
        "config",
        `${label}: connection.hostKey is neither an OpenSSH public key line nor a SHA256: fingerprint`,
      );
    }
    return {
      verify: (blob) => checkPinnedHostKey(blob, pin),
      preferTypes: pin.type ? [pin.type] : [],
    };
  }
  if (conn.insecureIgnoreHostKey) {
    let warned = false;
    return {
      verify: (blob) => {
        if (!warned) {
          warned = true;
          logWarn(
            `${label}: insecureIgnoreHostKey is set: accepting host key ${describeKey(blob)} without verification`,
          );
        }
        return { ok: true };
      },
      preferTypes: [],
    };
  }
  const file = expandHome(conn.knownHostsFile ?? join(homedir(), ".ssh", "known_hosts"));
  let content: string | undefined;
  try {
    content = await readKnownHostsFile(file);
  } catch (err) {
    throw new SshConnectionError(
      label,
      "config",
      `${label}: cannot read known_hosts file ${file}: ${reasonOf(err)}`,
    );
  }
  return {
    verify: (blob) => checkKnownHosts(blob, content, host, port, file),
    preferTypes: content === undefined ? [] : knownHostKeyTypes(content, host, port),
  };
}
