import * as pulumi from "@pulumi/pulumi";
import type { TapDeviceArgs as DynamicTapDeviceArgs } from "../tap-device";
import { nativeProps, withSecretConnection, type NativeConnectionInput } from "./common";

/** The inputs of the native TapDevice: those of the dynamic class, `connection` optional. */
export type TapDeviceArgs = Omit<DynamicTapDeviceArgs, "connection"> & NativeConnectionInput;

/** A persistent tap device on a hypervisor host, attached to a bridge or routed. Served by the native plugin (`hypervisor:index:TapDevice`). */
export class TapDevice extends pulumi.CustomResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly bridge: pulumi.Output<string | undefined>;
  declare readonly routed: pulumi.Output<
    { addresses: string[]; proxyArpInterface?: string } | undefined
  >;
  declare readonly owner: pulumi.Output<string | number | undefined>;
  declare readonly group: pulumi.Output<string | number | undefined>;
  declare readonly multiQueue: pulumi.Output<boolean | undefined>;
  declare readonly vnetHdr: pulumi.Output<boolean | undefined>;
  declare readonly mtu: pulumi.Output<number | undefined>;
  /** The tap's MAC address as observed (the host side; the guest NIC has its own). */
  declare readonly macAddress: pulumi.Output<string>;
  /** During preview only: the steps the provider would run on the host. */
  declare readonly plannedSteps: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: TapDeviceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "hypervisor:index:TapDevice",
      name,
      nativeProps(args, {
        macAddress: undefined,
      }),
      withSecretConnection(opts),
    );
  }
}
