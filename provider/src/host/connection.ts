import { z } from "zod";

// Field names follow @pulumi/command's remote.ConnectionArgs so one object serves both packages.
// `secret: true` marks credentials: the package schema (and so the state) keeps them secret.
const baseConnection = z
  .object({
    host: z.string().min(1, "host is required").describe("The host's address or name."),
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
    hostKey: z
      .string()
      .optional()
      .describe(
        'The host\'s public key (an OpenSSH line, "ssh-ed25519 AAAA...") or "SHA256:..." fingerprint, verified on every connect.',
      ),
    dialErrorLimit: z
      .number()
      .int()
      .min(1)
      .default(10)
      .describe("How many dials to try before giving up (as in @pulumi/command)."),
    perDialTimeout: z
      .number()
      .int()
      .min(1)
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
    sudo: z
      .union([
        z.boolean(),
        z
          .object({
            password: z
              .string()
              .meta({ description: "The sudo password, sent on stdin.", secret: true }),
          })
          .strict()
          .meta({ id: "ConnectionSudo", description: "sudo with a password." }),
      ])
      .default(false)
      .describe("Run commands through sudo: true for `sudo -n`, or a password sent on stdin."),
  })
  .strict();

export type ProxyConnection = z.infer<typeof baseConnection> & { proxy?: ProxyConnection };

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
      "`knownHostsFile`, `insecureIgnoreHostKey` and `sudo` are additions. `proxy` nests to any depth.",
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
