import { createHash } from "node:crypto";
import { stableJson } from "../stable-json";
import { connectionIdentity, connectionLabel, type Connection } from "./connection";
import type { Host, RunRequest, RunResult } from "./host";
import { SshHost } from "./ssh-host";
import { sshStats as readSshStats } from "./ssh-stats";

// One SshHost per host for the whole process, so every resource on a host shares one connection
// (sshd's MaxStartups refuses bursts of new connections). Bastions are pooled the same way.
//
// PULUMI_HYPERVISOR_SSH_POOL=off instead opens one fresh connection (and proxy chain) per command
// and closes it after, the way @pulumi/command's remote.Command does. It exists to measure what
// pooling saves (bench/fleet.ts); it is slower and can trip sshd's MaxStartups on busy hosts.

/** The environment variable that selects the connection mode: "on" (default) or "off". */
export const SSH_POOL_ENV = "PULUMI_HYPERVISOR_SSH_POOL";

const hosts = new Map<string, SshHost>();
const perCommandHosts = new Map<string, PerCommandHost>();
/** Closes of per-command connections still in flight; closeAllHosts waits for them. */
const closing = new Set<Promise<void>>();

/** Returns whether connections are pooled, from PULUMI_HYPERVISOR_SSH_POOL (default on). */
export function sshPoolEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env[SSH_POOL_ENV] ?? "").trim().toLowerCase();
  if (value === "" || value === "on" || value === "1" || value === "true") return true;
  if (value === "off" || value === "0" || value === "false") return false;
  throw new Error(
    `${SSH_POOL_ENV} must be "on" or "off" (default on), not ${JSON.stringify(env[SSH_POOL_ENV])}`,
  );
}

// A fresh SshHost and proxy chain for one command: the target first, then each bastion. A plain
// session per command, no remote shell: this mode is the model it is compared against.
function freshChain(conn: Connection): SshHost[] {
  const proxies = conn.proxy ? freshChain(conn.proxy) : [];
  return [new SshHost(conn, proxies[0], { shell: false }), ...proxies];
}

// Like a Go ssh client's Close after a command: the result is in hand, so it is not waited for
// (closeAllHosts does wait). Inner hops close before their bastions.
function closeChain(chain: readonly SshHost[]): void {
  const done = (async () => {
    for (const hop of chain) await hop.close();
  })().catch(() => undefined);
  closing.add(done);
  void done.finally(() => closing.delete(done));
}

/** One connection per command: the model of @pulumi/command, for comparison only. */
class PerCommandHost implements Host {
  readonly label: string;
  private sessionEnds: Promise<[string | undefined, number | undefined]> | undefined;

  constructor(private readonly conn: Connection) {
    this.label = connectionLabel(conn);
  }

  async run(req: RunRequest): Promise<RunResult> {
    const chain = freshChain(this.conn);
    try {
      return await (chain[0] as SshHost).run(req);
    } finally {
      closeChain(chain);
    }
  }

  // Every command already has a connection of its own.
  runFresh(req: RunRequest): Promise<RunResult> {
    return this.run(req);
  }

  // Asked once per process like the pooled host does, so both modes run the same commands.
  sessionClientAddress(): Promise<string | undefined> {
    return this.ends().then(([address]) => address);
  }

  sessionServerPort(): Promise<number | undefined> {
    return this.ends().then(([, port]) => port);
  }

  // The client's address and the session's port, from one session's $SSH_CONNECTION.
  private ends(): Promise<[string | undefined, number | undefined]> {
    if (!this.sessionEnds) {
      const chain = freshChain(this.conn);
      const hop = chain[0] as SshHost;
      const asked = Promise.all([hop.sessionClientAddress(), hop.sessionServerPort()]).finally(() =>
        closeChain(chain),
      );
      this.sessionEnds = asked;
      asked.catch(() => {
        if (this.sessionEnds === asked) this.sessionEnds = undefined;
      });
    }
    return this.sessionEnds;
  }
}

// user@host:port via the proxy chain, plus a digest of every setting (credentials, sudo, host key
// policy), so connections that differ in any of them never share a session; the digest keeps the
// credentials themselves out of the key.
function poolKey(conn: Connection): string {
  const digest = createHash("sha256")
    .update(stableJson(conn) ?? "")
    .digest("hex");
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
  if (sshPoolEnabled()) return sshHostFor(conn);
  const key = poolKey(conn);
  let host = perCommandHosts.get(key);
  if (!host) {
    host = new PerCommandHost(conn);
    perCommandHosts.set(key, host);
  }
  return host;
}

/** Closes every pooled connection, inner hops before their bastions, and empties the pool. */
export async function closeAllHosts(): Promise<void> {
  // A host is added after its proxy, so reverse insertion order closes inner hops first.
  const all = [...hosts.values()].reverse();
  hosts.clear();
  perCommandHosts.clear();
  for (const host of all) await host.close();
  await Promise.all([...closing]);
}

/** Returns how many SSH connections (each hop counts) and channels this process has opened. */
export function sshStats(): { connectionsOpened: number; channelsOpened: number } {
  return readSshStats();
}
