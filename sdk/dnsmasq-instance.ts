import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { dynamicProvider, withSecretConnection } from "./provider";

export interface DnsmasqDhcpRangeArgs {
  /** First address handed out dynamically (IPv4). */
  start: pulumi.Input<string>;
  /** Last address handed out dynamically (IPv4); not before `start`. */
  end: pulumi.Input<string>;
  /** Lease time in dnsmasq's notation: "1h" (default), "30m", "3600" (seconds), "infinite"; at least 2m. */
  leaseTime?: pulumi.Input<string>;
}

export interface DnsmasqStaticLeaseArgs {
  /** The client's MAC address. */
  mac: pulumi.Input<string>;
  /** The IPv4 address it always gets. */
  ip: pulumi.Input<string>;
  /** Its host name (a DNS label). */
  hostname?: pulumi.Input<string>;
}

export interface DnsmasqLease {
  /** Expiry in seconds since the epoch; 0 for an infinite lease. */
  expires: number;
  mac: string;
  ip: string;
  hostname?: string;
}

export interface DnsmasqInstanceArgs {
  /** How to reach the host (secret). */
  connection: pulumi.Input<ConnectionArgs>;
  /** Instance name (1-63 of letters, digits, '_', '.', '-'); names its files; a change replaces it. */
  name: pulumi.Input<string>;
  /** The interface (usually a bridge) dnsmasq serves and binds to; a change restarts dnsmasq. */
  interface: pulumi.Input<string>;
  /** The IPv4 network served ("198.18.130.0/24"); when set, addresses are checked against it at preview. */
  subnet?: pulumi.Input<string>;
  /** The dynamic pool; a change restarts dnsmasq (leases are kept). */
  dhcpRange: pulumi.Input<DnsmasqDhcpRangeArgs>;
  /** Fixed addresses by MAC; changes are applied live (hosts file + SIGHUP, same pid). */
  staticLeases?: pulumi.Input<pulumi.Input<DnsmasqStaticLeaseArgs>[]>;
  /** Default gateway for clients; unset: dnsmasq's own address on the interface. */
  router?: pulumi.Input<string>;
  /** DNS servers for clients; unset: dnsmasq itself when `dns` is on, none otherwise. */
  dnsServers?: pulumi.Input<pulumi.Input<string>[]>;
  /** DNS domain for clients (and served locally when `dns` is on). */
  domain?: pulumi.Input<string>;
  /** Serve DNS on the interface (default true); false sets `port=0`. */
  dns?: pulumi.Input<boolean>;
}

/** A dnsmasq serving DHCP (and optionally DNS) on one interface of a hypervisor host. */
export class DnsmasqInstance extends pulumi.dynamic.Resource {
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

  constructor(name: string, args: DnsmasqInstanceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      dynamicProvider("DnsmasqInstance"),
      name,
      {
        pid: undefined,
        configPath: undefined,
        leasesPath: undefined,
        leases: undefined,
        ...args,
        connection: pulumi.secret(args.connection),
      },
      withSecretConnection(opts),
      "hypervisor",
      "DnsmasqInstance",
    );
  }
}
