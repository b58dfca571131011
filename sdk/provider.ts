import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";

const providers = new Map<string, pulumi.dynamic.ResourceProvider>();

/**
 * Returns the dynamic provider object of a resource type. Pulumi serializes this object into the
 * state (`__provider`); it captures only the type name and loads the implementation lazily from
 * the installed package, so the serialized text is small, identical on every run, and secret-free.
 */
export function dynamicProvider(type: string): pulumi.dynamic.ResourceProvider {
  const hit = providers.get(type);
  if (hit) return hit;
  const provider: pulumi.dynamic.ResourceProvider = {
    check: (olds, news) =>
      require("pulumi-hypervisor/provider").handlersFor(type).check(olds, news),
    diff: (id, olds, news) =>
      require("pulumi-hypervisor/provider").handlersFor(type).diff(id, olds, news),
    create: (inputs) => require("pulumi-hypervisor/provider").handlersFor(type).create(inputs),
    read: (id, props) => require("pulumi-hypervisor/provider").handlersFor(type).read(id, props),
    update: (id, olds, news) =>
      require("pulumi-hypervisor/provider").handlersFor(type).update(id, olds, news),
    delete: (id, props) =>
      require("pulumi-hypervisor/provider").handlersFor(type).delete(id, props),
  };
  providers.set(type, provider);
  return provider;
}

/** Returns the options every resource gets: `connection` stays secret in outputs too. */
export function withSecretConnection(
  opts: pulumi.CustomResourceOptions | undefined,
): pulumi.CustomResourceOptions {
  return {
    ...opts,
    additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "connection"],
  };
}

/** The constructor of a resource class whose instances have the properties `P`. */
export type ResourceClass<A, P, R = pulumi.CustomResource> = new (
  name: string,
  args: A,
  opts?: pulumi.CustomResourceOptions,
) => R & P;

/**
 * Returns the base class of a dynamic resource type (`pulumi-nodejs:dynamic/hypervisor:<type>`):
 * it registers the args with `connection` secret, and every output name as undefined so the engine
 * resolves it. `P` only types the properties.
 */
export function dynamicResource<A extends { connection: pulumi.Input<ConnectionArgs> }, P>(
  type: string,
  outputNames: readonly string[],
): ResourceClass<A, P, pulumi.dynamic.Resource> {
  class DynamicResource extends pulumi.dynamic.Resource {
    constructor(name: string, args: A, opts?: pulumi.CustomResourceOptions) {
      super(
        dynamicProvider(type),
        name,
        {
          ...Object.fromEntries(outputNames.map((k) => [k, undefined])),
          ...args,
          connection: pulumi.secret(args.connection),
        },
        withSecretConnection(opts),
        "hypervisor",
        type,
      );
    }
  }
  // the properties are set by the engine from the registered outputs, not by the constructor
  return DynamicResource as unknown as ResourceClass<A, P, pulumi.dynamic.Resource>;
}
