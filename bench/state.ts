// The end state the bench compares between tools: per host, the job's links (kind, master, up,
// addresses, bridge and tap settings), the nft ruleset, ip_forward and each dnsmasq with its
// config, from bench/host-state.sh run inside the host's namespaces (not over SSH).
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import type { LabHost } from "../lab";

const OURS = /^(bbr|btap)\d+$/;

interface IpLink {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  addr_info?: Array<{ local?: string; prefixlen?: number; scope?: string; family?: string }>;
}

// Bridge and tun settings worth comparing (timers and ids left out: they are the kernel's).
const BRIDGE_KEYS = ["stp_state", "vlan_filtering", "forward_delay", "ageing_time", "priority"];
const TUN_KEYS = ["type", "pi", "vnet_hdr", "multi_queue", "persist", "user", "group"];

/** Returns the normalized state text of a host-state.sh output (sorted, ids and MACs left out). */
export function normalizeState(raw: string): string {
  const parts = raw.split(/^## (\w+)\n/m);
  const sections = new Map<string, string>();
  for (let i = 1; i + 1 < parts.length; i += 2) sections.set(parts[i] ?? "", parts[i + 1] ?? "");
  const section = (name: string): string => sections.get(name) ?? "";
  const links = (JSON.parse(section("links").trim() || "[]") as IpLink[])
    .filter((l) => OURS.test(l.ifname))
    .sort((a, b) => a.ifname.localeCompare(b.ifname));
  const out: string[] = [];
  for (const l of links) {
    const data = l.linkinfo?.info_data ?? {};
    const keys = l.linkinfo?.info_kind === "bridge" ? BRIDGE_KEYS : TUN_KEYS;
    const settings = keys.filter((k) => k in data).map((k) => `${k}=${JSON.stringify(data[k])}`);
    const addrs = (l.addr_info ?? [])
      .filter((a) => a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`)
      .sort();
    out.push(
      `link ${l.ifname} kind=${l.linkinfo?.info_kind ?? "?"} master=${l.master ?? "-"} ` +
        `up=${(l.flags ?? []).includes("UP")} mtu=${l.mtu ?? "?"} ${settings.join(" ")} ` +
        `addresses=${addrs.join(",")}`,
    );
  }
  out.push("nft:", section("nft").trimEnd());
  out.push(`ip_forward: ${section("ip_forward").trim()}`);
  out.push("dnsmasq:", section("dnsmasq").trimEnd());
  return out.join("\n") + "\n";
}

/** Returns the normalized state of a host. */
export async function hostState(h: LabHost): Promise<string> {
  const script = await readFile(path.join(__dirname, "host-state.sh"), "utf8");
  const r = await h.exec(["sh", "-c", script]);
  return normalizeState(r.stdout);
}

/** Removes what any tool left on a host (bench/host-clean.sh). */
export async function cleanHost(h: LabHost): Promise<void> {
  const script = await readFile(path.join(__dirname, "host-clean.sh"), "utf8");
  await h.exec(["sh", "-c", script]);
}

/** Returns the first differing lines of two states ("" when equal). */
export function stateDiff(want: string, got: string): string {
  const a = want.split("\n");
  const b = got.split("\n");
  const out: string[] = [];
  for (let i = 0; i < Math.max(a.length, b.length) && out.length < 8; i++) {
    if (a[i] !== b[i]) out.push(`  provider: ${a[i] ?? "(none)"}\n  tool:     ${b[i] ?? "(none)"}`);
  }
  return out.join("\n");
}
