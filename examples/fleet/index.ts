// A fleet: the same guest network stamped onto every host listed in a hosts file. Each host gets
// a bridge with the gateway address, dnsmasq on it with that host's own slice of the lease range
// (so guests that move between hosts never collide on a dynamic address), NAT out of the host's
// uplink, a tap for the guest, and one QEMU guest whose fixed address comes from a static lease.
//
// Hosts file (JSON, default ./hosts.json beside this program, or $HYPERVISOR_FLEET_HOSTS, or
// config `hostsFile`): [{ "name": "hv1", "connection": { "host": "...", "privateKey": "...",
// "hostKey": "..." }, "uplink": "eno1", "leaseRange": { "start": "...", "end": "..." } }, ...].
// `uplink` and `leaseRange` are optional per host (defaults: config `uplink`, and the host's slice
// of the subnet by its position in the file).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as hypervisor from "pulumi-hypervisor";

interface FleetHostEntry {
  name: string;
  connection: hypervisor.ConnectionArgs;
  /** The NIC that NAT sends guest traffic out of. */
  uplink?: string;
  /** This host's dynamic lease range inside the subnet. */
  leaseRange?: { start: string; end: string };
}

const config = new pulumi.Config();
const hostsFile =
  process.env["HYPERVISOR_FLEET_HOSTS"] ??
  config.get("hostsFile") ??
  path.join(__dirname, "hosts.json");
const hosts = JSON.parse(readFileSync(hostsFile, "utf8")) as FleetHostEntry[];

// The guest network, the same on every host: a /24, gateway .1, the guest at .2.
const subnet = config.get("subnet") ?? "198.18.170.0/24";
const prefix = subnet.replace(/\.0\/24$/, "");
if (prefix === subnet) throw new Error(`config subnet: ${subnet} is not an x.y.z.0/24 network`);
const bridgeName = config.get("bridge") ?? "br-fleet";
const defaultUplink = config.get("uplink") ?? "eth0";

// The guest: boots `guestKernel` (+ `guestInitrd`) when given, runs unless guestRunning is false.
const guestKernel = config.get("guestKernel");
const guestInitrd = config.get("guestInitrd");
const guestRunning = config.getBoolean("guestRunning") ?? true;

/** Returns host k's slice of .10-.249: 20 addresses each, so up to 12 hosts. */
function leaseSlice(k: number): { start: string; end: string } {
  if (k >= 12)
    throw new Error(`hosts file: host ${k + 1} has no default lease range; set leaseRange`);
  return { start: `${prefix}.${10 + 20 * k}`, end: `${prefix}.${29 + 20 * k}` };
}

export const fleet = hosts.map((h, k) => {
  const connection = h.connection;
  const hex = (k + 1).toString(16).padStart(2, "0");
  const bridge = new hypervisor.Bridge(`${h.name}-bridge`, {
    connection,
    name: bridgeName,
    addresses: [`${prefix}.1/24`],
    // A fixed MAC: otherwise the kernel gives the bridge the lowest MAC of its ports, so it
    // changes when the tap joins (guests would see their gateway's MAC change).
    macAddress: `52:54:00:fd:00:${hex}`,
  });
  const guestMac = `52:54:00:fe:00:${hex}`;
  const dhcp = new hypervisor.DnsmasqInstance(`${h.name}-dhcp`, {
    connection,
    name: bridgeName,
    interface: bridge.name,
    subnet,
    dhcpRange: { ...(h.leaseRange ?? leaseSlice(k)), leaseTime: "1h" },
    staticLeases: [{ mac: guestMac, ip: `${prefix}.2`, hostname: "guest" }],
    router: `${prefix}.1`,
  });
  const nat = new hypervisor.NatRule(`${h.name}-nat`, {
    connection,
    name: bridgeName,
    sourceCidr: subnet,
    outInterface: h.uplink ?? defaultUplink,
    masquerade: true,
    forward: true,
  });
  const tap = new hypervisor.TapDevice(`${h.name}-tap`, {
    connection,
    name: "fleet-tap0",
    bridge: bridge.name,
  });
  const guest = new hypervisor.QemuGuest(
    `${h.name}-guest`,
    {
      connection,
      name: "fleet-guest",
      memoryMiB: 256,
      accel: "auto",
      ...(guestKernel !== undefined ? { kernel: guestKernel } : {}),
      ...(guestInitrd !== undefined ? { initrd: guestInitrd } : {}),
      nics: [{ mac: guestMac, tap: tap.name }],
      disks: [{ path: "/var/lib/pulumi-hypervisor/qemu/fleet-guest/root.qcow2", sizeGiB: 1 }],
      running: guestRunning,
    },
    // The guest asks for its lease at boot, so dnsmasq and NAT come first.
    { dependsOn: [dhcp, nat] },
  );
  return {
    host: h.name,
    bridgeMac: bridge.macAddress,
    dnsmasqPid: dhcp.pid,
    natTable: nat.table,
    guestStatus: guest.status,
  };
});
