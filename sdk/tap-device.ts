import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { dynamicProvider, withSecretConnection } from "./provider";

export interface TapRoutedArgs {
  /** Guest addresses (IPv4 or IPv6, optionally with /32 or /128); each gets a host route via the tap. */
  addresses?: pulumi.Input<pulumi.Input<string>[]>;
  /** The uplink (e.g. Wi-Fi) to answer ARP on for the guests: proxy ARP on it and the tap, and IPv4 forwarding. */
  proxyArpInterface?: pulumi.Input<string>;
}

export interface TapDeviceArgs {
  /** How to reach the host (secret). */
  connection: pulumi.Input<ConnectionArgs>;
  /** Interface name (1-15 characters); a change replaces the tap. */
  name: pulumi.Input<string>;
  /** The bridge to attach the tap to, re-attached live on change; unset: not attached. Excludes `routed`. */
  bridge?: pulumi.Input<string>;
  /** Host routes and proxy ARP instead of a bridge (for uplinks that cannot be bridged). Excludes `bridge`. */
  routed?: pulumi.Input<TapRoutedArgs>;
  /** User name or uid allowed to open the tap (for an unprivileged QEMU); a change replaces the tap. */
  owner?: pulumi.Input<string | number>;
  /** Group name or gid allowed to open the tap; a change replaces the tap. */
  group?: pulumi.Input<string | number>;
  /** Create a multi-queue tap (default false); a change replaces the tap. */
  multiQueue?: pulumi.Input<boolean>;
  /** Create the tap with IFF_VNET_HDR (default false); a change replaces the tap. */
  vnetHdr?: pulumi.Input<boolean>;
  /** MTU in bytes; unset leaves it to the kernel. */
  mtu?: pulumi.Input<number>;
}

/** A persistent tap device on a hypervisor host, attached to a bridge or routed. */
export class TapDevice extends pulumi.dynamic.Resource {
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

  constructor(name: string, args: TapDeviceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      dynamicProvider("TapDevice"),
      name,
      { macAddress: undefined, ...args, connection: pulumi.secret(args.connection) },
      withSecretConnection(opts),
      "hypervisor",
      "TapDevice",
    );
  }
}
