import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { dynamicProvider, withSecretConnection } from "./provider";

export interface BridgeArgs {
  /** How to reach the host (secret). */
  connection: pulumi.Input<ConnectionArgs>;
  /** Interface name (1-15 characters); a change replaces the bridge. */
  name: pulumi.Input<string>;
  /** Addresses with prefix length (IPv4 or IPv6), applied live; others on the bridge are removed. */
  addresses?: pulumi.Input<pulumi.Input<string>[]>;
  /** Spanning tree protocol (default false). */
  stp?: pulumi.Input<boolean>;
  /** MTU in bytes; unset leaves it to the kernel. */
  mtu?: pulumi.Input<number>;
  /** The bridge's MAC address; unset leaves it to the kernel. */
  macAddress?: pulumi.Input<string>;
  /** NICs to enslave. The NIC carrying the SSH session needs its addresses in `addresses`. */
  ports?: pulumi.Input<pulumi.Input<string>[]>;
  /** VLAN filtering (default false). */
  vlanFiltering?: pulumi.Input<boolean>;
  /** Keep an `allow <name>` line in /etc/qemu/bridge.conf for qemu-bridge-helper (default false). */
  allowQemuBridgeHelper?: pulumi.Input<boolean>;
}

/** A Linux bridge on a hypervisor host. */
export class Bridge extends pulumi.dynamic.Resource {
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

  constructor(name: string, args: BridgeArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      dynamicProvider("Bridge"),
      name,
      {
        macAddress: undefined,
        ifIndex: undefined,
        ...args,
        connection: pulumi.secret(args.connection),
      },
      withSecretConnection(opts),
      "hypervisor",
      "Bridge",
    );
  }
}
