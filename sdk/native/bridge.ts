import * as pulumi from "@pulumi/pulumi";
import type { BridgeArgs as DynamicBridgeArgs } from "../bridge";
import { nativeProps, withSecretConnection, type NativeConnectionInput } from "./common";

/** The inputs of the native Bridge: those of the dynamic class, `connection` optional. */
export type BridgeArgs = Omit<DynamicBridgeArgs, "connection"> & NativeConnectionInput;

/** A Linux bridge on a hypervisor host. Served by the native plugin (`hypervisor:index:Bridge`). */
export class Bridge extends pulumi.CustomResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly addresses: pulumi.Output<string[]>;
  declare readonly stp: pulumi.Output<boolean | undefined>;
  declare readonly mtu: pulumi.Output<number | undefined>;
  declare readonly ports: pulumi.Output<string[] | undefined>;
  declare readonly vlanFiltering: pulumi.Output<boolean | undefined>;
  declare readonly allowQemuBridgeHelper: pulumi.Output<boolean | undefined>;
  /** The bridge's MAC address as observed. */
  declare readonly macAddress: pulumi.Output<string>;
  /** The kernel's interface index (stable across live updates). */
  declare readonly ifIndex: pulumi.Output<number>;
  /** During preview only: the steps the provider would run on the host. */
  declare readonly plannedSteps: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: BridgeArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "hypervisor:index:Bridge",
      name,
      nativeProps(args, {
        macAddress: undefined,
        ifIndex: undefined,
      }),
      withSecretConnection(opts),
    );
  }
}
