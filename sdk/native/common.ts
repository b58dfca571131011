import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../connection";
import { withSecretConnection, type ResourceClass } from "../provider";

/** `connection` is optional with the native provider: unset, the provider's connection is used. */
export interface NativeConnectionInput {
  /** How to reach the host (secret); default: the connection of the resource's provider. */
  connection?: pulumi.Input<ConnectionArgs>;
}

/** What every native resource has beyond the properties of its type. */
export interface NativeProperties {
  /** During preview only: the steps the provider would run on the host. */
  readonly plannedSteps: pulumi.Output<string[] | undefined>;
}

/** Returns the properties to register: the args (connection as a secret) and every output key. */
export function nativeProps(
  args: NativeConnectionInput & object,
  outputNames: readonly string[],
): pulumi.Inputs {
  const { connection, ...rest } = args;
  return {
    ...Object.fromEntries(outputNames.map((k) => [k, undefined])),
    plannedSteps: undefined,
    ...rest,
    ...(connection !== undefined ? { connection: pulumi.secret(connection) } : {}),
  };
}

/**
 * Returns the base class of a native resource type (`hypervisor:index:<type>`, served by the
 * plugin): `connection` secret, every output name registered. `P` only types the properties.
 */
export function nativeResource<A extends NativeConnectionInput & object, P>(
  type: string,
  outputNames: readonly string[],
): ResourceClass<A, P & NativeProperties> {
  class NativeResource extends pulumi.CustomResource {
    constructor(name: string, args: A, opts?: pulumi.CustomResourceOptions) {
      super(
        `hypervisor:index:${type}`,
        name,
        nativeProps(args, outputNames),
        withSecretConnection(opts),
      );
    }
  }
  // the properties are set by the engine from the registered outputs, not by the constructor
  return NativeResource as unknown as ResourceClass<A, P & NativeProperties>;
}
