import { z } from "zod";
import type { Host } from "../../host/host";
import { ipLinkSchema, parseHostJson } from "../../host-output";
import { canonicalIPv6 } from "../../net";
import { CLAIMS_DIR, parseSysctlProbe, SYSCTL_PROBE, type SysctlKey } from "../../sysctl";
import type { HostRoute, TapDeviceInputs, TapDeviceState, TapHolder, TapLink } from "./schema";

export const SEPARATOR = "--pulumi-hypervisor--";

/** Returns the owner under which this tap claims host-wide sysctls. */
export function claimOwner(name: string): string {
  return `tapdevice-${name}`;
}

/** Returns the sysctl key of an interface's proxy_arp. */
export function proxyArpKey(ifname: string): SysctlKey {
  return `net/ipv4/conf/${ifname}/proxy_arp`;
}

export const IP_FORWARD: SysctlKey = "net/ipv4/ip_forward";
export const DEFAULT_PROXY_ARP: SysctlKey = proxyArpKey("default");

// One round trip: links with tun details, host routes v4/v6, the sysctls (those asked for plus
// every claim this tap holds, found in the claims directory so a claim left by an older
// configuration is released too), the tap's owner/group (sysfs has them as numbers, `ip -j`
// prints names when it can), the desired owner/group resolved on the host, and the processes
// holding the tap (the tun driver prints `iff:\t<name>` in the fdinfo of an attached fd). fdinfo
// does not say which network namespace the device lives in, so only processes in this shell's
// namespace count: a tap of the same name in a container is another device.
const OBSERVE_SCRIPT = [
  'name=$1 user=$2 group=$3 owner="tapdevice-$1"',
  "shift 3",
  "ip -d -j link show || exit",
  `echo ${SEPARATOR}`,
  "ip -j route show table main || exit",
  `echo ${SEPARATOR}`,
  // A host booted with ipv6.disable=1 has no IPv6 routing table.
  "ip -6 -j route show table main 2>/dev/null || echo '[]'",
  `echo ${SEPARATOR}`,
  "probe() {",
  SYSCTL_PROBE,
  "}",
  "set -f",
  `claimed=$(cd ${CLAIMS_DIR} 2>/dev/null && find . -type f -name "$owner" 2>/dev/null | sed -e 's|^\\./||' -e 's|/[^/]*$||')`,
  'probe "$owner" "$@" $claimed',
  "set +f",
  `echo ${SEPARATOR}`,
  "d=/sys/class/net/$name",
  'if [ -r "$d/owner" ]; then echo "owner $(cat "$d/owner")"; fi',
  'if [ -r "$d/group" ]; then echo "group $(cat "$d/group")"; fi',
  'if [ -n "$user" ]; then echo "uid $(getent passwd "$user" | cut -d: -f3)"; fi',
  'if [ -n "$group" ]; then echo "gid $(getent group "$group" | cut -d: -f3)"; fi',
  `echo ${SEPARATOR}`,
  "tab=$(printf '\\t')",
  "self=$(readlink /proc/$$/ns/net)",
  'for f in $(grep -lxF -e "iff:$tab$name" /proc/[0-9]*/fdinfo/* 2>/dev/null); do',
  "  pid=${f#/proc/}; pid=${pid%%/*}",
  '  [ "$(readlink /proc/$pid/ns/net 2>/dev/null)" = "$self" ] || continue',
  "  echo \"holder $pid $(tr '\\000\\n\\t' '   ' < /proc/$pid/cmdline 2>/dev/null | cut -c1-300)\"",
  "done",
  "exit 0",
].join("\n");

/** Returns the names to resolve on the host: only names, numeric ids need no lookup. */
function lookupName(account: string | null): string {
  return account !== null && !/^\d+$/.test(account) ? account : "";
}

/** Returns the sysctl keys the plan needs to see for these inputs. */
export function probedKeys(inputs: TapDeviceInputs): SysctlKey[] {
  const uplink = inputs.routed?.proxyArpInterface;
  return [
    IP_FORWARD,
    DEFAULT_PROXY_ARP,
    proxyArpKey(inputs.name),
    ...(uplink !== undefined ? [proxyArpKey(uplink)] : []),
  ];
}

/** Returns the argv of the single observe probe. */
export function observeArgv(inputs: TapDeviceInputs): string[] {
  return [
    "sh",
    "-c",
    OBSERVE_SCRIPT,
    "sh",
    inputs.name,
    lookupName(inputs.owner),
    lookupName(inputs.group),
    ...probedKeys(inputs),
  ];
}

// Host output is validated too: a changed `ip` format fails loudly instead of planning nonsense.
const IpLink = ipLinkSchema({
  type: z.string().optional(),
  vnet_hdr: z.boolean().optional(),
  multi_queue: z.boolean().optional(),
  persist: z.boolean().optional(),
});

const IpRoute = z
  .object({
    type: z.string().optional(),
    dst: z.string(),
    dev: z.string().optional(),
    protocol: z.string().optional(),
  })
  .loose();

/** Returns the links parsed from `ip -d -j link show`. */
export function parseTapLinks(text: string): Record<string, TapLink> {
  const links: Record<string, TapLink> = {};
  for (const l of parseHostJson(z.array(IpLink), text, "ip -d -j link show")) {
    const kind = l.linkinfo?.info_kind;
    const data = l.linkinfo?.info_data;
    links[l.ifname] = {
      name: l.ifname,
      ifIndex: l.ifindex,
      macAddress: (l.address ?? "").toLowerCase(),
      mtu: l.mtu,
      up: l.flags.includes("UP"),
      kind,
      master: l.master,
      ...(kind === "tun"
        ? {
            tunType: data?.type ?? "unknown",
            multiQueue: data?.multi_queue ?? false,
            vnetHdr: data?.vnet_hdr ?? false,
            persist: data?.persist ?? false,
          }
        : {}),
    };
  }
  return links;
}

/** Returns the host routes (/32, /128) parsed from `ip -j route show table main`. */
export function parseHostRoutes(text: string, family: 4 | 6): HostRoute[] {
  const out: HostRoute[] = [];
  for (const r of parseHostJson(
    z.array(IpRoute),
    text,
    `ip ${family === 6 ? "-6 " : ""}-j route show`,
  )) {
    // `ip` prints a host route without its prefix; a /32 or /128 typed by hand keeps it.
    const [address = "", prefix] = r.dst.split("/");
    if (prefix !== undefined && prefix !== (family === 4 ? "32" : "128")) continue;
    if (address === "default") continue;
    out.push({
      family,
      address: family === 6 ? canonicalIPv6(address) : address,
      dev: r.dev,
      protocol: r.protocol,
      type: r.type ?? "unicast",
    });
  }
  return out;
}

/** Returns the `key value` lines of the ids section. */
function parseIds(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^(owner|group|uid|gid) ?(.*)$/.exec(line.trim());
    if (m) out[m[1] ?? ""] = m[2] ?? "";
  }
  return out;
}

function idOf(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined; // -1: no owner
  return Number(v);
}

function resolved(v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  return /^\d+$/.test(v) ? Number(v) : null;
}

/** Returns the holders parsed from the `holder <pid> <command>` lines, one per pid. */
export function parseHolders(text: string): TapHolder[] {
  const byPid = new Map<number, TapHolder>();
  for (const line of text.split("\n")) {
    const m = /^holder (\d+) ?(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    if (!byPid.has(pid)) byPid.set(pid, { pid, command: (m[2] ?? "").trim() });
  }
  return [...byPid.values()].sort((a, b) => a.pid - b.pid);
}

/** Returns the tap state parsed from the probe's output. */
export function parseTapDeviceState(name: string, stdout: string): TapDeviceState {
  const sections = stdout.split(`${SEPARATOR}\n`);
  if (sections.length !== 6) {
    throw new Error(`unexpected output of the tap probe: ${sections.length} sections, expected 6`);
  }
  const [links = "", routes4 = "", routes6 = "", sysctls = "", ids = "", holders = ""] = sections;
  const all = parseTapLinks(links);
  const link = all[name];
  const id = parseIds(ids);
  return {
    name,
    tap: link && link.kind === "tun" && link.tunType === "tap" ? link : undefined,
    links: all,
    hostRoutes: [...parseHostRoutes(routes4, 4), ...parseHostRoutes(routes6, 6)],
    sysctls: parseSysctlProbe(sysctls),
    ownerId: idOf(id["owner"]),
    groupId: idOf(id["group"]),
    resolvedUid: resolved(id["uid"]),
    resolvedGid: resolved(id["gid"]),
    holders: parseHolders(holders),
  };
}

/** Observes the tap, its routes, sysctls, owner and holders in one remote command. */
export async function observeTapDevice(
  host: Host,
  inputs: TapDeviceInputs,
): Promise<TapDeviceState> {
  const r = await host.run({ argv: observeArgv(inputs) });
  return parseTapDeviceState(inputs.name, r.stdout);
}
