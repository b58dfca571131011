import type { ManagedBridge } from "./manager";

/** Where networkd reads the admin's files; `05-` sorts before the distribution's (`10-`, `50-`, `99-`). */
export const NETWORKD_DIR = "/etc/systemd/network";

/** What networkd needs to bring the bridge and its NICs back. */
export type NetworkdBridge = ManagedBridge;

const HEADER = "# Written by pulumi-hypervisor; deleting the bridge removes this file.";

/** Returns the networkd files of the bridge and each NIC it took over, by path. */
export function renderNetworkdFiles(b: NetworkdBridge): Record<string, string> {
  const files: Record<string, string> = {};
  const base = `${NETWORKD_DIR}/05-pulumi-hypervisor-${b.bridge}`;
  files[`${base}.netdev`] = [
    HEADER,
    "[NetDev]",
    `Name=${b.bridge}`,
    "Kind=bridge",
    ...(b.macAddress !== undefined ? [`MACAddress=${b.macAddress}`] : []),
    ...(b.mtu !== undefined ? [`MTUBytes=${b.mtu}`] : []),
    "",
    "[Bridge]",
    `STP=${b.stp ? "yes" : "no"}`,
    "",
  ].join("\n");
  const routes = b.routes.flatMap((r) => [
    "",
    "[Route]",
    `Destination=${r.dst === "default" ? (r.family === 6 ? "::/0" : "0.0.0.0/0") : r.dst}`,
    ...(r.gateway !== undefined ? [`Gateway=${r.gateway}`] : []),
    ...(r.flags?.includes("onlink") ? ["GatewayOnLink=yes"] : []),
    ...(r.metric !== undefined ? [`Metric=${r.metric}`] : []),
    ...(r.prefsrc !== undefined ? [`PreferredSource=${r.prefsrc}`] : []),
    ...(r.scope !== undefined && r.scope !== "global" ? [`Scope=${r.scope}`] : []),
    ...(r.table !== undefined && r.table !== "main" ? [`Table=${r.table}`] : []),
    ...(r.type !== undefined && r.type !== "unicast" ? [`Type=${r.type}`] : []),
  ]);
  files[`${base}.network`] = [
    HEADER,
    "[Match]",
    `Name=${b.bridge}`,
    "",
    "[Network]",
    // the provider owns the bridge's addresses: no DHCP, no router advertisements
    "DHCP=no",
    "IPv6AcceptRA=no",
    "ConfigureWithoutCarrier=yes",
    ...b.addresses.map((a) => `Address=${a}`),
    ...routes,
    "",
  ].join("\n");
  for (const nic of b.nics) {
    files[`${base}-${nic}.network`] = [
      HEADER,
      "[Match]",
      `Name=${nic}`,
      "",
      "[Network]",
      `Bridge=${b.bridge}`,
      "",
    ].join("\n");
  }
  return files;
}
