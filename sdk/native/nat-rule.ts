import * as pulumi from "@pulumi/pulumi";
import type { NatRuleArgs as DynamicNatRuleArgs } from "../nat-rule";
import { nativeProps, withSecretConnection, type NativeConnectionInput } from "./common";

/** The inputs of the native NatRule: those of the dynamic class, `connection` optional. */
export type NatRuleArgs = Omit<DynamicNatRuleArgs, "connection"> & NativeConnectionInput;

/** Source NAT, forward accepts and port forwards for a guest network, in a table the provider owns. Served by the native plugin (`hypervisor:index:NatRule`). */
export class NatRule extends pulumi.CustomResource {
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
  /** During preview only: the steps the provider would run on the host. */
  declare readonly plannedSteps: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: NatRuleArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "hypervisor:index:NatRule",
      name,
      nativeProps(args, {
        table: undefined,
        activeBackend: undefined,
        unmanagedRules: undefined,
      }),
      withSecretConnection(opts),
    );
  }
}
