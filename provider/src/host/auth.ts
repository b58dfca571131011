import type { ConnectConfig } from "ssh2";
import type { Connection } from "./connection";

/** One SSH authentication method and the ssh2 settings it needs. */
export interface AuthMethod {
  readonly method: "publickey" | "password" | "agent" | "none";
  readonly config: Partial<ConnectConfig>;
}

/** Returns the methods a connection offers, in the order they are tried ("none" when it has none). */
export function authMethodsOf(
  conn: Connection,
  env: NodeJS.ProcessEnv = process.env,
): AuthMethod[] {
  const { privateKey, privateKeyPassword, password, agentSocketPath } = conn;
  const methods: AuthMethod[] = [];
  if (privateKey !== undefined) {
    methods.push({
      method: "publickey",
      config:
        privateKeyPassword !== undefined
          ? { privateKey, passphrase: privateKeyPassword }
          : { privateKey },
    });
  }
  if (password !== undefined) methods.push({ method: "password", config: { password } });
  // Like @pulumi/command, the agent defaults to SSH_AUTH_SOCK.
  const agent = agentSocketPath ?? env["SSH_AUTH_SOCK"];
  if (agent) methods.push({ method: "agent", config: { agent } });
  if (methods.length === 0) methods.push({ method: "none", config: {} });
  return methods;
}

/** Returns the message for a refused login: what was offered, and what to set when nothing was. */
export function authFailureMessage(
  label: string,
  offered: readonly string[],
  notes: readonly string[],
): string {
  const extra = notes.length > 0 ? ` (${notes.join("; ")})` : "";
  if (offered.length === 1 && offered[0] === "none") {
    return (
      `${label}: authentication failed: no credentials given; ` +
      `set connection.privateKey, connection.password or connection.agentSocketPath${extra}`
    );
  }
  return `${label}: authentication failed: the server accepted none of the offered methods (${offered.join(", ")})${extra}`;
}
