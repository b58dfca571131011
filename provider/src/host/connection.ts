import { isIP } from "node:net";
import { z } from "zod";
import { parseHostKeyPin } from "./host-keys";

/** Seconds a dial may take at most: an hour (Node turns timers above 2147483 s into 1 ms). */
export const MAX_PER_DIAL_TIMEOUT = 3600;
/** Dials tried at most before giving up; with the 5 s backoff cap, 100 is about eight minutes. */
export const MAX_DIAL_ERROR_LIMIT = 100;

// RFC 1123 labels (underscores tolerated, as resolvers do), at most 253 characters in all.
const HOSTNAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** Returns whether the text is a hostname or an IPv4/IPv6 address (messages never echo it). */
export function isHostSyntax(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

const HostName = z
  .string()
  .min(1, "host is required")
  .refine((h) => h === "" || isHostSyntax(h), "must be a hostname or an IP address");

const HostKey = z
  .string()
  .refine(
    (k) => parseHostKeyPin(k) !== undefined,
    "must be an OpenSSH public key line (ssh-ed25519 AAAA...) or a SHA256: fingerprint",
  );

// Field names follow @pulumi/command's remote.ConnectionArgs so one object serves both packages.
const baseConnection = z
  .object({
    host: HostName,
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1).default("root"),
    password: z.string().optional(),
    privateKey: z.string().optional(),
    privateKeyPassword: z.string().optional(),
    agentSocketPath: z.string().optional(),
    /** OpenSSH public key line ("ssh-ed25519 AAAA...") or "SHA256:..." fingerprint. */
    hostKey: HostKey.optional(),
    /** How many dials to try before giving up (default 10, like @pulumi/command). */
    dialErrorLimit: z.number().int().min(1).max(MAX_DIAL_ERROR_LIMIT).default(10),
    /** Seconds allowed for each dial (default 15, like @pulumi/command). */
    perDialTimeout: z.number().int().min(1).max(MAX_PER_DIAL_TIMEOUT).default(15),
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
