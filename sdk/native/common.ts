import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../connection";

/** `connection` is optional with the native provider: unset, the provider's connection is used. */
export interface NativeConnectionInput {
  /** How to reach the host (secret); default: the connection of the resource's provider. */
  connection?: pulumi.Input<ConnectionArgs>;
}

/** Returns the properties to register: the args (connection as a secret) and every output key. */
export function nativeProps(
  args: NativeConnectionInput & object,
  outputs: Record<string, undefined>,
): pulumi.Inputs {
  const { connection, ...rest } = args;
  return {
    ...outputs,
    plannedSteps: undefined,
    ...rest,
    ...(connection !== undefined ? { connection: pulumi.secret(connection) } : {}),
  };
}

// the same as the dynamic classes: `connection` stays secret in outputs too
export { withSecretConnection } from "../provider";
