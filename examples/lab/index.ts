// The built-in lab's program: the same guest network stamped onto every lab host (the network of
// examples/wifi-laptop: a bridge with the gateway address, dnsmasq with a static lease, NAT out of
// the host's WAN link wan0, a tap on the bridge for a guest).
// `npm run lab` starts the lab hosts (booted Debian 12 hosts with systemd, so everything here
// persists and comes back after `npm run lab -- reboot lab-1`), writes their connection details to
// the hosts file and applies this program (with `pulumi up` when the Pulumi CLI is installed,
// otherwise through the engine-protocol driver).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as hypervisor from "pulumi-hypervisor";

interface LabHostEntry {
  name: string;
  index: number;
  connection: hypervisor.ConnectionArgs;
}

const hostsFile =
  process.env["HYPERVISOR_LAB_HOSTS"] ?? path.join(__dirname, "..", "..", ".lab", "hosts.json");
const hosts = JSON.parse(readFileSync(hostsFile, "utf8")) as LabHostEntry[];

export const networks = hosts.map((h) => {
  const { connection } = h;
  // Each host's guest subnet: 198.18.(100 + index).0/24 (inside the lab host only), plus a
  // documentation IPv6 prefix.
  const net = `198.18.${100 + h.index}`;
  const br = new hypervisor.Bridge(`${h.name}-br-guests`, {
    connection,
    name: "br-guests",
    addresses: [`${net}.1/24`, `2001:db8:${100 + h.index}::1/64`],
    allowQemuBridgeHelper: true,
  });
  const dhcp = new hypervisor.DnsmasqInstance(`${h.name}-dhcp`, {
    connection,
    name: "guests",
    interface: br.name,
    subnet: `${net}.0/24`,
    dhcpRange: { start: `${net}.100`, end: `${net}.199`, leaseTime: "1h" },
    staticLeases: [{ mac: "52:54:00:00:10:01", ip: `${net}.10`, hostname: "guest1" }],
    router: `${net}.1`,
  });
  const nat = new hypervisor.NatRule(`${h.name}-nat`, {
    connection,
    name: "guests",
    sourceCidr: `${net}.0/24`,
    outInterface: "wan0",
    masquerade: true,
    forward: true,
  });
  const tap = new hypervisor.TapDevice(`${h.name}-tap`, {
    connection,
    name: "tap-guest1",
    bridge: br.name,
  });
  return {
    host: h.name,
    bridge: br.name,
    bridgeMac: br.macAddress,
    dnsmasqPid: dhcp.pid,
    natTable: nat.table,
    tap: tap.name,
  };
});
