import { createHash } from "node:crypto";
import { connectionIdentity, connectionLabel, type Connection } from "./connection";
import type { Host } from "./host";
import { SshHost, sshStats as readSshStats } from "./ssh-host";

// One SshHost per host for the whole process, so every resource on a host shares one connection
// (sshd's MaxStartups refuses bursts of new connections). Bastions are pooled the same way.

const hosts = new Map<string, SshHost>();

// Sorted keys, so equal connections give equal text whatever order their fields came in.
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

// user@host:port via the proxy chain, plus a digest of every setting (credentials, sudo, host key
// policy), so connections that differ in any of them never share a session; the digest keeps the
// credentials themselves out of the key.
function poolKey(conn: Connection): string {
  const digest = createHash("sha256").update(stableJson(conn)).digest("hex");
  return `${connectionLabel(conn)} ${connectionIdentity(conn)} ${digest}`;
}

function sshHostFor(conn: Connection): SshHost {
  const key = poolKey(conn);
  let host = hosts.get(key);
  if (!host) {
    const proxy = conn.proxy ? sshHostFor(conn.proxy) : undefined;
    host = new SshHost(conn, proxy);
    hosts.set(key, host);
  }
  return host;
}

/** Returns the process-wide pooled host for a (parsed) connection. */
export function hostFor(conn: Connection): Host {
  return sshHostFor(conn);
}

/** Closes every pooled connection, inner hops before their bastions, and empties the pool. */
export async function closeAllHosts(): Promise<void> {
  // A host is added after its proxy, so reverse insertion order closes inner hops first.
  const all = [...hosts.values()].reverse();
  hosts.clear();
  for (const host of all) await host.close();
}

/** Returns how many SSH connections (each hop counts) and channels this process has opened. */
export function sshStats(): { connectionsOpened: number; channelsOpened: number } {
  return readSshStats();
}
