import { z } from "zod";
import type { Host, RunResult } from "../../host/host";
import {
  ipBatchOutputs,
  ipLinkSchema,
  parseHostJson,
  parseMainTableRoutes,
} from "../../host-output";
import { canonicalHostAddress, canonicalIPv6 } from "../../net";
import { observeWith, type ObserveContext, type ProbeCall } from "../../resource";
import { parseProbe } from "../../host/probe";
import { declareRunsInShell, scriptIn, type ScriptCall } from "../../host/script";
import { keepOffPaths, parseKeepOffProbe } from "../../persist/keep-off";
import { persistProbeArgs } from "../../persist/oneshot";
import { parsePersistProbe, probeUnits, warnNoSystemd } from "../../persist/persistence";
import { unitName, unitPath } from "../../persist/systemd-unit";
import { parseSysctlProbe, type SysctlKey } from "../../sysctl";
import type { HostRoute, TapDeviceInputs, TapDeviceState, TapHolder, TapLink } from "./schema";

// Reviewed against declareRunsInShell's contract; its $$ (the loop's then) only names the network
// namespace, which the loop shares.
declareRunsInShell("tap-probe.sh");

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

/** The unit and boot script folder name of taps. */
export const TAP_KIND = "tap";

/** Returns the unit file of a bridge's own unit (the bridge is the provider's when it exists). */
export function bridgeUnitFile(bridge: string): string {
  return unitPath(unitName("bridge", bridge));
}

/**
 * Returns the links a plan looks at (the tap, its bridge, its uplink): the probe lists those
 * alone, not every link on the host, which costs the host and the controller per link.
 */
function lookedAtLinks(inputs: TapDeviceInputs): string[] {
  const names = [inputs.name, inputs.bridge, inputs.routed?.proxyArpInterface];
  return [...new Set(names.filter((n): n is string => typeof n === "string" && n !== ""))];
}

/**
 * Returns the call of the single observe probe (tap-probe.sh). After a delete (`after: "delete"`) it
 * asks what a delete's plan reads: the tap alone (no bridge, uplink or clash check), and the
 * sysctls' values only while the tap or a claim is left; a tap that is gone then costs no `ip`.
 */
export function observeCall(
  inputs: TapDeviceInputs,
  lookOnly = false,
  afterDelete = false,
): ScriptCall {
  return scriptIn(__dirname, "tap-probe.sh", [
    inputs.name,
    lookupName(inputs.owner),
    lookupName(inputs.group),
    inputs.bridge !== null ? bridgeUnitFile(inputs.bridge) : "",
    ...persistProbeArgs(TAP_KIND, inputs.name, keepOffPaths(TAP_KIND, inputs.name, true)),
    lookOnly ? "0" : "1",
    afterDelete ? inputs.name : lookedAtLinks(inputs).join(" "),
    // a tap that is not routed needs the values only once it exists (the plan compares its proxy_arp)
    inputs.routed === null || afterDelete ? "if-tap" : "always",
    // and of the host's routes its own (to remove those it added when it was routed) and, for a
    // routed tap, the host routes of its addresses (its plan checks them for a clash)
    ["tap", ...(afterDelete ? [] : (inputs.routed?.addresses ?? []))].join(" "),
    ...probedKeys(inputs),
  ]);
}

// Host output is validated too: a changed `ip` format fails loudly instead of planning nonsense.
const IpLink = ipLinkSchema({
  type: z.string().optional(),
  vnet_hdr: z.boolean().optional(),
  multi_queue: z.boolean().optional(),
  persist: z.boolean().optional(),
}).extend({ ifalias: z.string().optional() });

const IpRoute = z
  .object({
    type: z.string().optional(),
    dst: z.string(),
    dev: z.string().optional(),
    protocol: z.string().optional(),
    table: z.string().optional(),
  })
  .loose();

/**
 * Returns the links parsed from `ip -d -j link show` lines: one JSON list per line (the probe asks
 * for each link on its own).
 */
export function parseTapLinks(text: string): Record<string, TapLink> {
  const links: Record<string, TapLink> = {};
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (const l of lines.flatMap((line) =>
    parseHostJson(z.array(IpLink), line, "ip -d -j link show"),
  )) {
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
      ...(l.ifalias !== undefined ? { ifalias: l.ifalias } : {}),
    };
  }
  return links;
}

/**
 * Returns the main table's host routes (/32, /128) parsed from `ip -d -j route show table all`
 * (a route without a table, as plain `ip -j route show table main` prints it, is main's); `via`:
 * the listing was of the routes via that device (`... dev NAME`).
 */
export function parseHostRoutes(text: string, via?: string): HostRoute[] {
  const out: HostRoute[] = [];
  for (const listed of parseMainTableRoutes(IpRoute, text)) {
    // listed with `dev`, `ip` prints no route's dev: each is via that device
    const r = via !== undefined ? { ...listed, dev: via } : listed;
    // an IPv6 destination has a colon; "default" of either family is skipped below
    const family = r.dst.includes(":") ? 6 : 4;
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

/** Returns the routes without repeats: a route via the tap is in its own listing and an exact one. */
function uniqueRoutes(routes: HostRoute[]): HostRoute[] {
  const seen = new Set<string>();
  return routes.filter((r) => {
    const key = JSON.stringify([r.family, r.address, r.dev, r.protocol, r.type]);
    return seen.has(key) ? false : (seen.add(key), true);
  });
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

/**
 * Returns the holders parsed from the `holder <pid> <command>` lines, one per pid; undefined when
 * the probe did not look (`not-probed`).
 */
export function parseHolders(text: string): TapHolder[] | undefined {
  if (text.split("\n").includes("not-probed")) return undefined;
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
  const out = parseProbe(stdout, "the tap probe");
  // the routes via the tap (or every route), the host routes of each address in routes-exact
  // (absent from captures of older probes), then a line per link that exists
  const listed = out.need("links");
  const exact = (out.get("routes-exact") ?? "").split("\n").filter((l) => l.trim() !== "");
  const [routes = "", ...exactRoutes] = ipBatchOutputs(
    listed,
    1 + exact.length,
    1 + exact.length,
    "ip -d -j -batch (route show table all ..., link show dev ...)",
  );
  const lines = listed.split("\n").filter((l) => l.trim() !== "");
  const all = parseTapLinks(lines.slice(1 + exact.length).join("\n"));
  const link = all[name];
  const id = parseIds(out.need("ids"));
  // the routes via one device only, when the probe asked for those alone
  const via = out.need("routes-via").trim();
  return {
    name,
    tap: link && link.kind === "tun" && link.tunType === "tap" ? link : undefined,
    links: all,
    hostRoutes: uniqueRoutes([
      ...parseHostRoutes(routes, via === "" ? undefined : via),
      ...exactRoutes.flatMap((l) => parseHostRoutes(l)),
    ]),
    sysctls: parseSysctlProbe(out.need("sysctls")),
    ownerId: idOf(id["owner"]),
    groupId: idOf(id["group"]),
    resolvedUid: resolved(id["uid"]),
    resolvedGid: resolved(id["gid"]),
    holders: parseHolders(out.need("holders")),
    persisted: parsePersistProbe(out),
    bridgeUnit: out.need("bridge-unit").trim() === "yes",
    keepOff: parseKeepOffProbe(out),
  };
}

/** Returns the tap's probe: the tap, its routes, sysctls, owner and holders in one command. */
export function probeTapDevice(inputs: TapDeviceInputs, ctx?: ObserveContext): ProbeCall {
  return {
    call: observeCall(inputs, ctx?.lookOnly === true, ctx?.after === "delete"),
    units: probeUnits(unitName(TAP_KIND, inputs.name), "active", true),
    // after a create or an update the tap is there: the probe asks for it with the apply's lines
    ...(ctx?.after === "converge" ? { takesIpLines: true } : {}),
  };
}

/** Returns the tap state from its probe's result. */
export function parseTapDeviceResult(
  r: RunResult,
  inputs: TapDeviceInputs,
  ctx: ObserveContext,
): TapDeviceState {
  const state = parseTapDeviceState(inputs.name, r.stdout);
  if (inputs.persistence === "auto") warnNoSystemd(ctx.host, state.persisted);
  const client = ctx.sshClientAddress;
  return {
    ...state,
    inputs,
    ...(client !== undefined ? { sshClientAddress: canonicalHostAddress(client) ?? client } : {}),
    ...(ctx.creating ? { creating: true } : {}),
  };
}

/** Observes the tap, its routes, sysctls, owner and holders in one remote command. */
export function observeTapDevice(
  host: Host,
  inputs: TapDeviceInputs,
  ctx: ObserveContext,
): Promise<TapDeviceState> {
  return observeWith({ probe: probeTapDevice, parse: parseTapDeviceResult }, host, inputs, ctx);
}
