import { isIPv4 } from "node:net";
import { ipv4NetworkAddress, netmaskOf, prefixOfNetmask } from "../../net";
import { dnsmasqPaths, type DnsmasqInstanceInputs, type Lease, type StaticLease } from "./schema";

/** The first line of every config the provider writes. */
export function configHeader(name: string): string {
  return `# managed by pulumi-hypervisor: dnsmasq instance ${name}; edits are overwritten`;
}

/**
 * Returns the dnsmasq config of an instance. It binds to `interface` only (bind-dynamic, so it
 * coexists with a system dnsmasq, libvirt's or another instance on another interface), reads no
 * /etc/hosts and polls no resolv.conf, and keeps its pid, hosts and lease files in provider paths.
 */
export function renderDnsmasqConf(d: DnsmasqInstanceInputs): string {
  const p = dnsmasqPaths(d.name);
  const { start, end, leaseTime } = d.dhcpRange;
  const netmask = d.subnet === undefined ? [] : [netmaskOf(Number(d.subnet.split("/")[1]))];
  const lines = [
    configHeader(d.name),
    `interface=${d.interface}`,
    "bind-dynamic",
    "except-interface=lo",
    "no-hosts",
    // port=0 turns the DNS server off; with DNS on, resolv.conf is read at start and on SIGHUP only.
    ...(d.dns ? ["no-poll"] : ["port=0", "no-resolv"]),
    `pid-file=${p.pidPath}`,
    `dhcp-leasefile=${p.leasesPath}`,
    `dhcp-hostsfile=${p.hostsPath}`,
    "dhcp-authoritative",
    `dhcp-range=${[start, end, ...netmask, leaseTime].join(",")}`,
    ...(d.router !== undefined ? [`dhcp-option=option:router,${d.router}`] : []),
    ...(d.dnsServers.length > 0 ? [`dhcp-option=option:dns-server,${d.dnsServers.join(",")}`] : []),
    ...(d.domain !== undefined ? [`domain=${d.domain}`] : []),
    ...(d.domain !== undefined && d.dns ? [`local=/${d.domain}/`] : []),
  ];
  return lines.join("\n") + "\n";
}

/** Returns the dhcp-hostsfile content: one `mac,ip[,hostname]` line per static lease. */
export function renderDhcpHosts(leases: readonly StaticLease[]): string {
  return leases
    .map((l) => [l.mac, l.ip, ...(l.hostname !== undefined ? [l.hostname] : [])].join(",") + "\n")
    .join("");
}

/** The inputs a config file written by renderDnsmasqConf describes (for refresh drift). */
export type ConfInputs = Omit<DnsmasqInstanceInputs, "name" | "staticLeases">;

/** Returns the inputs a config describes (only the lines renderDnsmasqConf writes are read). */
export function parseDnsmasqConf(text: string): Partial<ConfInputs> {
  const out: Partial<ConfInputs> = { dns: true, dnsServers: [] };
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    const key = eq < 0 ? line : line.slice(0, eq);
    const value = eq < 0 ? "" : line.slice(eq + 1);
    if (key === "interface") out.interface = value;
    else if (key === "port" && value === "0") out.dns = false;
    else if (key === "domain") out.domain = value;
    else if (key === "dhcp-option" && value.startsWith("option:router,")) {
      out.router = value.slice("option:router,".length);
    } else if (key === "dhcp-option" && value.startsWith("option:dns-server,")) {
      out.dnsServers = value.slice("option:dns-server,".length).split(",");
    } else if (key === "dhcp-range") {
      const parts = value.split(",");
      const [start = "", end = ""] = parts;
      const leaseTime = parts[parts.length - 1] ?? "";
      out.dhcpRange = { start, end, leaseTime };
      const bits = parts.length === 4 ? prefixOfNetmask(parts[2] ?? "") : undefined;
      if (bits !== undefined && isIPv4(start))
        out.subnet = `${ipv4NetworkAddress(start, bits)}/${bits}`;
    }
  }
  return out;
}

/** Returns the static leases a dhcp-hostsfile lists. */
export function parseDhcpHosts(text: string): StaticLease[] {
  const out: StaticLease[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const [mac = "", ip = "", hostname] = line.split(",");
    out.push({ mac, ip, ...(hostname !== undefined ? { hostname } : {}) });
  }
  return out;
}

/** Returns the IPv4 leases of a dnsmasq lease file (`expiry mac ip hostname client-id` lines). */
export function parseLeases(text: string): Lease[] {
  const out: Lease[] = [];
  for (const line of text.split("\n")) {
    const [expiry = "", mac = "", ip = "", hostname = "*"] = line.trim().split(/\s+/);
    // DHCPv6 leases follow a "duid" line and have no MAC; only IPv4 leases are reported.
    if (!/^\d+$/.test(expiry) || !isIPv4(ip)) continue;
    out.push({
      expires: Number(expiry),
      mac: mac.toLowerCase(),
      ip,
      ...(hostname !== "*" ? { hostname } : {}),
    });
  }
  return out;
}
