// How the examples reach their host: stack config, the SSH key kept secret.
//   pulumi config set host 192.0.2.10
//   pulumi config set hostKey "ssh-ed25519 AAAA..."     # or SHA256:...
//   pulumi config set --secret sshPrivateKey "$(cat ~/.ssh/id_ed25519)"
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "pulumi-hypervisor";

/** Returns the connection to the stack's hypervisor host, from stack config. */
export function hostConnection(): ConnectionArgs {
  const cfg = new pulumi.Config();
  return {
    host: cfg.require("host"),
    user: cfg.get("user") ?? "root",
    privateKey: cfg.requireSecret("sshPrivateKey"),
    hostKey: cfg.require("hostKey"),
  };
}
