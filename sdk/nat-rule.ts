import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { dynamicProvider, withSecretConnection } from "./provider";

export interface PortForwardArgs {
  /** "tcp" or "udp". */
  protocol: pulumi.Input<"tcp" | "udp">;
  /** The port on the host's own addresses (1-65535). */
  hostPort: pulumi.Input<number>;
  /** The guest's IPv4 address. */
  destination: pulumi.Input<string>;
  /** The port on the guest (1-65535). */
  destinationPort: pulumi.Input<number>;
  /** Only connections arriving on this interface; unset: any interface. */
  inInterface?: pulumi.Input<string>;
}

export interface NatRuleArgs {
  /** How to reach the host (secret). */
  connection: pulumi.Input<ConnectionArgs>;
  /** 1-19 of letters, digits, '_', '-', starting with a letter; names the nft table `pulumi_hv_<name>`; a change replaces the rule. */
  name: pulumi.Input<string>;
  /** The IPv4 network whose traffic is translated ("198.18.140.0/24"; host bits are cleared). */
  sourceCidr: pulumi.Input<string>;
  /** The interface the translated traffic leaves by (the uplink). */
  outInterface: pulumi.Input<string>;
  /** Rewrite the source to the outgoing interface's address (default false); excludes `snatTo`. */
  masquerade?: pulumi.Input<boolean>;
  /** Rewrite the source to this fixed IPv4 address; excludes `masquerade`. */
  snatTo?: pulumi.Input<string>;
  /** Accept forwarding from `sourceCidr` out of `outInterface` and established/related back (default false). */
  forward?: pulumi.Input<boolean>;
  /** DNAT from ports on the host's addresses to guests, each with the forward accepts it needs. */
  portForwards?: pulumi.Input<pulumi.Input<PortForwardArgs>[]>;
  /** "nftables", "iptables" or "auto" (default: the backend already in use, else nft when installed). */
  backend?: pulumi.Input<"nftables" | "iptables" | "auto">;
}

/** Source NAT, forward accepts and port forwards for a guest network, in a table the provider owns. */
export class NatRule extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  declare readonly sourceCidr: pulumi.Output<string>;
  declare readonly outInterface: pulumi.Output<string>;
  declare readonly masquerade: pulumi.Output<boolean | undefined>;
  declare readonly snatTo: pulumi.Output<string | null | undefined>;
  declare readonly forward: pulumi.Output<boolean | undefined>;
  declare readonly portForwards: pulumi.Output<
    | {
        protocol: "tcp" | "udp";
        hostPort: number;
        destination: string;
        destinationPort: number;
        inInterface?: string;
      }[]
    | undefined
  >;
  declare readonly backend: pulumi.Output<"nftables" | "iptables" | "auto" | undefined>;
  /** The nft table (`pulumi_hv_<name>`, family ip) or the iptables chain prefix (`PHV-<name>`). */
  declare readonly table: pulumi.Output<string>;
  /** The backend actually holding the rules: "nftables" or "iptables". */
  declare readonly activeBackend: pulumi.Output<"nftables" | "iptables">;
  /** Rules or chain changes inside the provider's own table that no input describes (made by hand). */
  declare readonly unmanagedRules: pulumi.Output<string[]>;

  constructor(name: string, args: NatRuleArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      dynamicProvider("NatRule"),
      name,
      {
        table: undefined,
        activeBackend: undefined,
        unmanagedRules: undefined,
        ...args,
        connection: pulumi.secret(args.connection),
      },
      withSecretConnection(opts),
      "hypervisor",
      "NatRule",
    );
  }
}
