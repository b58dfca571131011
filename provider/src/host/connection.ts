import { z } from "zod";

// Field names follow @pulumi/command's remote.ConnectionArgs so one object serves both packages.
const baseConnection = z
  .object({
    host: z.string().min(1, "host is required"),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1).default("root"),
    password: z.string().optional(),
    privateKey: z.string().optional(),
    privateKeyPassword: z.string().optional(),
    agentSocketPath: z.string().optional(),
    /** OpenSSH public key line ("ssh-ed25519 AAAA...") or "SHA256:..." fingerprint. */
    hostKey: z.string().optional(),
    /** How many dials to try before giving up (default 10, like @pulumi/command). */
    dialErrorLimit: z.number().int().min(1).default(10),
    /** Seconds allowed for each dial (default 15, like @pulumi/command). */
    perDialTimeout: z.number().int().min(1).default(15),
    knownHostsFile: z.string().optional(),
    insecureIgnoreHostKey: z.boolean().default(false),
    /** Run commands through sudo: true for `sudo -n`, or a password sent on stdin. */
    sudo: z.union([z.boolean(), z.object({ password: z.string() }).strict()]).default(false),
  })
  .strict();

export type ProxyConnection = z.infer<typeof baseConnection> & { proxy?: ProxyConnection };

/** Connection to a host; `proxy` nests to any depth (bastions). */
export const Connection: z.ZodType<ProxyConnection, unknown> = baseConnection.extend({
  proxy: z.lazy(() => Connection).optional(),
}) as unknown as z.ZodType<ProxyConnection, unknown>;

export type Connection = ProxyConnection;

/** Returns "user@host:port" for logs and errors; never includes a credential. */
export function connectionLabel(c: Pick<Connection, "user" | "host" | "port">): string {
  return `${c.user}@${c.host}:${c.port}`;
}

/** Returns the identity of the host a connection reaches: same identity, same object. */
export function connectionIdentity(c: Connection): string {
  const via = c.proxy ? ` via ${connectionIdentity(c.proxy)}` : "";
  return `${c.host}:${c.port}${via}`;
}
