import * as pulumi from "@pulumi/pulumi";
import type {
  DnsmasqInstanceArgs as DynamicDnsmasqInstanceArgs,
  DnsmasqLease,
} from "../dnsmasq-instance";
import { nativeProps, withSecretConnection, type NativeConnectionInput } from "./common";

/** The inputs of the native DnsmasqInstance: those of the dynamic class, `connection` optional. */
export type DnsmasqInstanceArgs = Omit<DynamicDnsmasqInstanceArgs, "connection"> &
  NativeConnectionInput;

/** A dnsmasq serving DHCP (and optionally DNS) on one interface of a hypervisor host. Served by the native plugin (`hypervisor:index:DnsmasqInstance`). */
export class DnsmasqInstance extends pulumi.CustomResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly interface: pulumi.Output<string>;
  declare readonly subnet: pulumi.Output<string | undefined>;
  declare readonly dhcpRange: pulumi.Output<{ start: string; end: string; leaseTime?: string }>;
  declare readonly staticLeases: pulumi.Output<
    { mac: string; ip: string; hostname?: string }[] | undefined
  >;
  declare readonly router: pulumi.Output<string | undefined>;
  declare readonly dnsServers: pulumi.Output<string[] | undefined>;
  declare readonly domain: pulumi.Output<string | undefined>;
  declare readonly dns: pulumi.Output<boolean | undefined>;
  /** The pid of the running dnsmasq. */
  declare readonly pid: pulumi.Output<number>;
  /** Where its config file is on the host. */
  declare readonly configPath: pulumi.Output<string>;
  /** Where its lease file is on the host. */
  declare readonly leasesPath: pulumi.Output<string>;
  /** The leases in the lease file when last observed. */
  declare readonly leases: pulumi.Output<DnsmasqLease[]>;
  /** During preview only: the steps the provider would run on the host. */
  declare readonly plannedSteps: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: DnsmasqInstanceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "hypervisor:index:DnsmasqInstance",
      name,
      nativeProps(args, {
        pid: undefined,
        configPath: undefined,
        leasesPath: undefined,
        leases: undefined,
      }),
      withSecretConnection(opts),
    );
  }
}
