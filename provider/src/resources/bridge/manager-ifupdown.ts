import { quoteArgv } from "../../host/quote";
import type { ManagedBridge } from "./manager";
import { routeLine } from "./uplink";

/** The file holding the bridge's stanza; after the NIC's own file in the `source` glob's order. */
export function ifupdownBridgePath(bridge: string): string {
  return `/etc/network/interfaces.d/pulumi-hypervisor-${bridge}`;
}

// A line that starts a stanza (or a top-level directive) ends the options of the one before.
const STANZA =
  /^\s*(iface|auto|allow-[\w-]+|mapping|source|source-directory|rename|no-auto-down|no-scripts)(\s|$)/;

function ifaceRe(nic: string): RegExp {
  return new RegExp(`^\\s*iface\\s+${nic.replace(/\./g, "\\.")}\\s+(inet6?)\\s+(\\S+)`);
}

/** The NIC's stanza as ifupdown reads it: its method and the option lines the bridge keeps. */
export interface IfaceStanza {
  readonly method: string;
  /** `dns-*` options: they name the host's resolvers, not the NIC, so the bridge carries them. */
  readonly carried: readonly string[];
}

/** Returns the NIC's `iface ... inet` stanza in the file, or undefined. */
export function readIfaceStanza(content: string, nic: string): IfaceStanza | undefined {
  const lines = content.split("\n");
  const re = ifaceRe(nic);
  for (let i = 0; i < lines.length; i++) {
    const m = re.exec(lines[i] ?? "");
    if (!m || m[1] !== "inet") continue;
    const carried: string[] = [];
    for (let j = i + 1; j < lines.length; j++) {
      const l = lines[j] ?? "";
      if (l.trim() === "" || STANZA.test(l)) break;
      if (/^\s*dns-/.test(l)) carried.push(l.trim());
    }
    return { method: m[2] ?? "", carried };
  }
  return undefined;
}

/**
 * Returns the file with the NIC's own stanzas replaced by `iface NIC inet manual`: its addresses
 * and routes now belong to the bridge. Everything else (its `auto` line, comments, other
 * interfaces) stays byte for byte.
 */
export function editNicStanza(content: string, nic: string): string {
  const lines = content.split("\n");
  const re = ifaceRe(nic);
  const out: string[] = [];
  let skipping = false;
  let replaced = false;
  for (const l of lines) {
    if (skipping) {
      if (l.trim() !== "" && !STANZA.test(l) && !/^#/.test(l)) continue;
      skipping = false;
    }
    if (re.test(l)) {
      skipping = true;
      if (!replaced) out.push(`iface ${nic} inet manual`);
      replaced = true;
      continue;
    }
    out.push(l);
  }
  return out.join("\n");
}

/** What the bridge's stanza says. */
export interface IfupdownBridge extends ManagedBridge {
  readonly carried: readonly string[];
  /** "ifupdown", "ifupdown bridge-utils" or "ifupdown2" (manager-probe.sh). */
  readonly flavour: string;
}

/**
 * Returns the bridge's stanza file: `bridge_ports` (bridge-utils) or `bridge-ports` (ifupdown2)
 * where the host has them, otherwise `pre-up` commands; the first IPv4 address as `address`, the
 * others and every moved route as `up` commands with all their attributes.
 */
export function renderIfupdownBridge(b: IfupdownBridge): string {
  const [first, ...rest] = [
    ...b.addresses.filter((a) => !a.includes(":")),
    ...b.addresses.filter((a) => a.includes(":")),
  ];
  const v4 = first !== undefined && !first.includes(":") ? first : undefined;
  const more = v4 === undefined ? b.addresses : rest;
  const opts: string[] = [];
  if (v4 !== undefined) opts.push(`address ${v4}`);
  if (b.flavour === "ifupdown2") {
    opts.push(`bridge-ports ${b.nics.join(" ")}`, `bridge-stp ${b.stp ? "on" : "off"}`);
  } else if (b.flavour === "ifupdown bridge-utils") {
    opts.push(`bridge_ports ${b.nics.join(" ")}`, `bridge_stp ${b.stp ? "on" : "off"}`);
    opts.push("bridge_fd 0", "bridge_maxwait 0");
  } else {
    const exists = quoteArgv(["ip", "link", "show", "dev", b.bridge]);
    const add = quoteArgv([
      "ip",
      "link",
      "add",
      "name",
      b.bridge,
      "type",
      "bridge",
      "stp_state",
      b.stp ? "1" : "0",
    ]);
    opts.push(`pre-up ${exists} >/dev/null 2>&1 || ${add}`);
    for (const nic of b.nics) {
      opts.push(`pre-up ${quoteArgv(["ip", "link", "set", "dev", nic, "master", b.bridge])}`);
      opts.push(`pre-up ${quoteArgv(["ip", "link", "set", "dev", nic, "up"])}`);
    }
    opts.push(`post-down ${quoteArgv(["ip", "link", "del", "dev", b.bridge])}`);
  }
  if (b.macAddress !== undefined) opts.push(`hwaddress ether ${b.macAddress}`);
  if (b.mtu !== undefined) opts.push(`mtu ${b.mtu}`);
  opts.push(...b.carried);
  if (v4 === undefined) opts.push(`up ${quoteArgv(["ip", "link", "set", "dev", b.bridge, "up"])}`);
  for (const a of more) opts.push(`up ${quoteArgv(["ip", "addr", "add", a, "dev", b.bridge])}`);
  for (const r of b.routes) opts.push(`up ${routeLine(r, b.bridge)}`);
  return [
    `# Written by pulumi-hypervisor: bridge ${b.bridge} with ${b.nics.join(", ")} and its addresses.`,
    `# Deleting the bridge puts back the stanza this replaced (kept in /etc/pulumi-hypervisor/bridge-nic/${b.bridge}/).`,
    `auto ${b.bridge}`,
    `iface ${b.bridge} inet ${v4 !== undefined ? "static" : "manual"}`,
    ...opts.map((o) => `    ${o}`),
    "",
  ].join("\n");
}
