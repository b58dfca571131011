import type * as pulumi from "@pulumi/pulumi";

/**
 * How to reach a host. The fields are those of `@pulumi/command`'s `remote.ConnectionArgs`, so one
 * object serves both packages; `knownHostsFile`, `insecureIgnoreHostKey` and `sudo` are additions.
 */
export interface ConnectionArgs {
  host: pulumi.Input<string>;
  port?: pulumi.Input<number>;
  user?: pulumi.Input<string>;
  password?: pulumi.Input<string>;
  privateKey?: pulumi.Input<string>;
  privateKeyPassword?: pulumi.Input<string>;
  agentSocketPath?: pulumi.Input<string>;
  /** The host's public key (OpenSSH line) or `SHA256:` fingerprint, verified on every connect. */
  hostKey?: pulumi.Input<string>;
  dialErrorLimit?: pulumi.Input<number>;
  /** Seconds allowed for each dial. */
  perDialTimeout?: pulumi.Input<number>;
  /** A connection to a bastion through which this host is reached; nests to any depth. */
  proxy?: pulumi.Input<ConnectionArgs>;
  /** Verify against this known_hosts file (default ~/.ssh/known_hosts when no hostKey). */
  knownHostsFile?: pulumi.Input<string>;
  /** Skip host key verification (warns on every connect). */
  insecureIgnoreHostKey?: pulumi.Input<boolean>;
  /** Run commands through `sudo -n` (true) or with a password sent on stdin. */
  sudo?: pulumi.Input<boolean | { password: pulumi.Input<string> }>;
}
