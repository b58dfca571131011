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
// `secret: true` marks credentials: the package schema (and so the state) keeps them secret.
const baseConnection = z
  .object({
    host: HostName.describe("The host's address or name."),
    port: z.number().int().min(1).max(65535).default(22).describe("The SSH port."),
    user: z.string().min(1).default("root").describe("The user to log in as."),
    password: z.string().optional().meta({ description: "The user's password.", secret: true }),
    privateKey: z
      .string()
      .optional()
      .meta({ description: "A private key in OpenSSH or PEM format.", secret: true }),
    privateKeyPassword: z
      .string()
      .optional()
      .meta({ description: "The private key's passphrase.", secret: true }),
    agentSocketPath: z.string().optional().describe("The ssh-agent socket to authenticate with."),
    hostKey: HostKey.optional().describe(
      'The host\'s public key (an OpenSSH line, "ssh-ed25519 AAAA...") or "SHA256:..." fingerprint, verified on every connect.',
    ),
    dialErrorLimit: z
      .number()
      .int()
      .min(1)
      .max(MAX_DIAL_ERROR_LIMIT)
      .default(10)
      .describe("How many dials to try before giving up (as in @pulumi/command)."),
    perDialTimeout: z
      .number()
      .int()
      .min(1)
      .max(MAX_PER_DIAL_TIMEOUT)
      .default(15)
      .describe("Seconds allowed for each dial (as in @pulumi/command)."),
    knownHostsFile: z
      .string()
      .optional()
      .describe(
        "Verify against this known_hosts file (default ~/.ssh/known_hosts when no hostKey).",
      ),
    insecureIgnoreHostKey: z
      .boolean()
      .default(false)
      .describe("Skip host key verification (warns on every connect)."),
    // Optional without a default: a connection that leaves it out stays the same object as before
    // the field existed, so no resource sees its connection change when the provider is upgraded.
    compression: z
      .boolean()
      .optional()
      .describe(
        "Compress the SSH transport with zlib (as `ssh -C`): about a tenth of the bytes on the link, for some CPU on both ends; for slow links. Off unless true; a server that does not offer it is used uncompressed.",
      ),
    sudo: z
      .union([
        z.boolean(),
        z
          .object({
            password: z.string().meta({
              description: "The sudo password, sent only to sudo's own prompt.",
              secret: true,
            }),
          })
          .strict()
          .meta({ id: "ConnectionSudo", description: "sudo with a password." }),
      ])
      .default(false)
      .describe(
        "Run commands through sudo: true for `sudo -n`, or a password that is sent only to sudo's own prompt.",
      ),
  })
  .strict();

export type ProxyConnection = z.infer<typeof baseConnection> & { proxy?: ProxyConnection };

// Whether a field's value is a string once its optional and default wrappers are off.
function isStringField(t: z.ZodType): boolean {
  let inner: z.ZodType = t;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodDefault) {
    inner = inner.unwrap() as z.ZodType;
  }
  return inner instanceof z.ZodString;
}

/**
 * The connection's fields, each with whether its value is a string: stack config and generated
 * SDKs send the others JSON-encoded (the native provider's configuration decodes them).
 */
export const CONNECTION_FIELDS: ReadonlyMap<string, "string" | "json"> = new Map([
  ...Object.entries(baseConnection.shape).map(
    ([k, t]) => [k, isStringField(t as z.ZodType) ? "string" : "json"] as const,
  ),
  ["proxy", "json"],
]);

/** Connection to a host; `proxy` nests to any depth (bastions). */
export const Connection: z.ZodType<ProxyConnection, unknown> = baseConnection
  .extend({
    proxy: z
      .lazy(() => Connection)
      .optional()
      .describe(
        "A connection to a bastion through which this host is reached; nests to any depth.",
      ),
  })
  .meta({
    id: "Connection",
    description:
      "How to reach a host over SSH. The fields are those of `@pulumi/command`'s `remote.ConnectionArgs`; " +
      "`knownHostsFile`, `insecureIgnoreHostKey`, `sudo` and `compression` are additions. `proxy` nests to any depth.",
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
