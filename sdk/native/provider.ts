import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../connection";

export interface ProviderArgs {
  /** How to reach the host (secret). Resources using this provider default to it. */
  connection?: pulumi.Input<ConnectionArgs>;
}

/**
 * One hypervisor host, served by the native plugin (`pulumi-resource-hypervisor`). Resources pick it
 * with the `provider` option instead of repeating `connection`. Only a change of host, port or proxy
 * replaces the resources it serves; rotated credentials are an in-place update.
 */
export class Provider extends pulumi.ProviderResource {
  constructor(name: string, args: ProviderArgs = {}, opts?: pulumi.ResourceOptions) {
    super(
      "hypervisor",
      name,
      args.connection !== undefined ? { connection: pulumi.secret(args.connection) } : {},
      opts,
    );
  }
}
