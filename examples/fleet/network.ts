// The fleet's guest network, shared by both fleet programs: index.ts (the dynamic classes, each
// resource given the host's `connection`) and native.ts (the native classes, each host behind its
// own `Provider`). The hosts file and config are read here; `stampGuestNetwork` puts the same
// network on one host with whichever set of classes it is given.
//
// Hosts file (JSON, default ./hosts.json beside the program, or $HYPERVISOR_FLEET_HOSTS, or
// config `hostsFile`): [{ "name": "hv1", "connection": { "host": "...", "privateKey": "...",
// "hostKey": "..." }, "uplink": "eno1", "leaseRange": { "start": "...", "end": "..." } }, ...].
// `uplink` and `leaseRange` are optional per host (defaults: config `uplink`, and the host's slice
// of the subnet by its position in the file).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type * as hypervisor from "pulumi-hypervisor";

export interface FleetHostEntry {
  name: string;
  connection: hypervisor.ConnectionArgs;
  /** The NIC that NAT sends guest traffic out of. */
  uplink?: string;
  /** This host's dynamic lease range inside the subnet. */
  leaseRange?: { start: string; end: string };
}

/** What is the same on every host (from config). */
export interface FleetSettings {
  /** The guest network, a /24: gateway .1, the guest at .2. */
  subnet: string;
  /** `subnet` without its `.0/24`. */
  prefix: string;
  bridgeName: string;
  defaultUplink: string;
  /** The guest boots this kernel (+ initrd) when given. */
  guestKernel: string | undefined;
  guestInitrd: string | undefined;
  guestRunning: boolean;
}

/** Returns the hosts file's entries and the fleet's settings from config. */
export function loadFleet(programDir: string): {
  hosts: FleetHostEntry[];
  settings: FleetSettings;
} {
  const config = new pulumi.Config();
  const hostsFile =
    process.env["HYPERVISOR_FLEET_HOSTS"] ??
    config.get("hostsFile") ??
    path.join(programDir, "hosts.json");
  const hosts = JSON.parse(readFileSync(hostsFile, "utf8")) as FleetHostEntry[];
  const subnet = config.get("subnet") ?? "198.18.170.0/24";
  const prefix = subnet.replace(/\.0\/24$/, "");
  if (prefix === subnet) throw new Error(`config subnet: ${subnet} is not an x.y.z.0/24 network`);
  return {
    hosts,
    settings: {
      subnet,
      prefix,
      bridgeName: config.get("bridge") ?? "br-fleet",
      defaultUplink: config.get("uplink") ?? "eth0",
      guestKernel: config.get("guestKernel"),
      guestInitrd: config.get("guestInitrd"),
      guestRunning: config.getBoolean("guestRunning") ?? true,
    },
  };
}

/** Returns host k's slice of .10-.249: 20 addresses each, so up to 12 hosts. */
export function leaseSlice(prefix: string, k: number): { start: string; end: string } {
  if (k >= 12)
    throw new Error(`hosts file: host ${k + 1} has no default lease range; set leaseRange`);
  return { start: `${prefix}.${10 + 20 * k}`, end: `${prefix}.${29 + 20 * k}` };
}

type Ctor<Args, R> = new (
  name: string,
  args: Args,
  opts?: pulumi.CustomResourceOptions,
) => pulumi.CustomResource & R;
type Named = { name: pulumi.Output<string> };
type WithoutConnection<T> = Omit<T, "connection">;

/**
 * The classes the network is made of: `hypervisor` (dynamic) or `hypervisor.native`. `Reach` is
 * what every resource is given to reach its host: `{ connection }` for the dynamic classes, `{}`
 * for native ones under a provider.
 */
export interface FleetClasses<Reach> {
  Bridge: Ctor<
    WithoutConnection<hypervisor.BridgeArgs> & Reach,
    Named & { macAddress: pulumi.Output<string> }
  >;
  DnsmasqInstance: Ctor<
    WithoutConnection<hypervisor.DnsmasqInstanceArgs> & Reach,
    Named & { pid: pulumi.Output<number> }
  >;
  NatRule: Ctor<
    WithoutConnection<hypervisor.NatRuleArgs> & Reach,
    Named & { table: pulumi.Output<string> }
  >;
  TapDevice: Ctor<WithoutConnection<hypervisor.TapDeviceArgs> & Reach, Named>;
  QemuGuest: Ctor<
    WithoutConnection<hypervisor.QemuGuestArgs> & Reach,
    Named & { status: pulumi.Output<string> }
  >;
}

/** Creates the network on host number k (from 0) and returns what the stack exports for it. */
export function stampGuestNetwork<Reach>(
  classes: FleetClasses<Reach>,
  settings: FleetSettings,
  h: FleetHostEntry,
  k: number,
  reach: { args: Reach; opts?: pulumi.CustomResourceOptions },
): {
  host: string;
  bridgeMac: pulumi.Output<string>;
  dnsmasqPid: pulumi.Output<number>;
  natTable: pulumi.Output<string>;
  guestStatus: pulumi.Output<string>;
} {
  const { prefix, subnet, bridgeName } = settings;
  const opts = reach.opts ?? {};
  const hex = (k + 1).toString(16).padStart(2, "0");
  const bridge = new classes.Bridge(
    `${h.name}-bridge`,
    {
      ...reach.args,
      name: bridgeName,
      addresses: [`${prefix}.1/24`],
      // A fixed MAC: otherwise the kernel gives the bridge the lowest MAC of its ports, so it
      // changes when the tap joins (guests would see their gateway's MAC change).
      macAddress: `52:54:00:fd:00:${hex}`,
    },
    opts,
  );
  const guestMac = `52:54:00:fe:00:${hex}`;
  const dhcp = new classes.DnsmasqInstance(
    `${h.name}-dhcp`,
    {
      ...reach.args,
      name: bridgeName,
      interface: bridge.name,
      subnet,
      dhcpRange: { ...(h.leaseRange ?? leaseSlice(prefix, k)), leaseTime: "1h" },
      staticLeases: [{ mac: guestMac, ip: `${prefix}.2`, hostname: "guest" }],
      router: `${prefix}.1`,
    },
    opts,
  );
  const nat = new classes.NatRule(
    `${h.name}-nat`,
    {
      ...reach.args,
      name: bridgeName,
      sourceCidr: subnet,
      outInterface: h.uplink ?? settings.defaultUplink,
      masquerade: true,
      forward: true,
    },
    opts,
  );
  const tap = new classes.TapDevice(
    `${h.name}-tap`,
    { ...reach.args, name: "fleet-tap0", bridge: bridge.name },
    opts,
  );
  const guest = new classes.QemuGuest(
    `${h.name}-guest`,
    {
      ...reach.args,
      name: "fleet-guest",
      memoryMiB: 256,
      accel: "auto",
      ...(settings.guestKernel !== undefined ? { kernel: settings.guestKernel } : {}),
      ...(settings.guestInitrd !== undefined ? { initrd: settings.guestInitrd } : {}),
      nics: [{ mac: guestMac, tap: tap.name }],
      disks: [{ path: "/var/lib/pulumi-hypervisor/qemu/fleet-guest/root.qcow2", sizeGiB: 1 }],
      running: settings.guestRunning,
    },
    // The guest asks for its lease at boot, so dnsmasq and NAT come first.
    { ...opts, dependsOn: [dhcp, nat] },
  );
  return {
    host: h.name,
    bridgeMac: bridge.macAddress,
    dnsmasqPid: dhcp.pid,
    natTable: nat.table,
    guestStatus: guest.status,
  };
}
