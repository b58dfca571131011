import { z } from "zod";
import type { Host, RunResult } from "../../host/host";
import { parseProbe } from "../../host/probe";
import { declareRunsInShell, scriptIn, type ScriptCall } from "../../host/script";
import {
  ipBatchOutputs,
  ipLinkSchema,
  parseHostJson,
  parseMainTableRoutes,
} from "../../host-output";
import { canonicalCidr } from "../../net";
import { keepOffPaths, parseKeepOffProbe } from "../../persist/keep-off";
import { persistProbeArgs } from "../../persist/oneshot";
import { parsePersistProbe, probeUnits, warnNoSystemd } from "../../persist/persistence";
import { PERSIST_DIR, unitName } from "../../persist/systemd-unit";
import { observeWith, type ObserveContext, type ProbeCall } from "../../resource";
import { parseManagerProbe } from "./manager";
import type { BridgeInputs, BridgeState, Link, Route } from "./schema";

// Reviewed against declareRunsInShell's contract.
declareRunsInShell("bridge-probe.sh");

/** Where each bridge records the ports it enslaved, so it never detaches a tap or NIC it did not attach. */
export const PORTS_DIR = "/run/pulumi-hypervisor/bridge";

/** The marker line written above each `allow` line the provider owns. */
export function helperMarker(bridge: string): string {
  return `# managed by pulumi-hypervisor: bridge ${bridge}`;
}

/** The unit and boot script folder name of bridges. */
export const BRIDGE_KIND = "bridge";

/** Returns where a persisted bridge records the MAC it pinned, so it gets it again at boot. */
export function macFile(name: string): string {
  return `${PERSIST_DIR}/${BRIDGE_KIND}/${name}.mac`;
}

/**
 * Returns the call of the single observe probe (bridge-probe.sh), which lists the links a plan
 * reads: the bridge, its ports, and the `ports` asked for.
 */
export function observeCall(
  name: string,
  sshClientAddress: string | undefined,
  ports: readonly string[],
): ScriptCall {
  return scriptIn(__dirname, "bridge-probe.sh", [
    sshClientAddress ?? "",
    name,
    ports.join(" "),
    ...persistProbeArgs(BRIDGE_KIND, name, [
      macFile(name),
      ...keepOffPaths(BRIDGE_KIND, name, false),
    ]),
  ]);
}

// Host output is validated too: a changed `ip` format fails loudly instead of planning nonsense.
const IpAddrInfo = z.object({
  family: z.string(),
  local: z.string().optional(),
  prefixlen: z.number().optional(),
  scope: z.string().optional(),
});
const IpLink = ipLinkSchema({
  stp_state: z.number().optional(),
  vlan_filtering: z.number().optional(),
}).extend({
  addr_info: z.array(IpAddrInfo.loose()).default([]),
  ifalias: z.string().optional(),
});
const IpRoute = z
  .object({
    dst: z.string(),
    gateway: z.string().optional(),
    dev: z.string().optional(),
    protocol: z.string().optional(),
    metric: z.number().optional(),
    prefsrc: z.string().optional(),
    type: z.string().optional(),
    table: z.string().optional(),
    scope: z.string().optional(),
    flags: z.array(z.string()).optional(),
    pref: z.string().optional(),
    nexthops: z.array(z.unknown()).optional(),
  })
  .loose();

/** Returns the links parsed from `ip -d -j addr show`. */
export function parseLinks(text: string): Record<string, Link> {
  const links: Record<string, Link> = {};
  for (const l of parseHostJson(z.array(IpLink), text, "ip -d -j addr show")) {
    const addresses: string[] = [];
    for (const a of l.addr_info) {
      if (a.local === undefined || a.prefixlen === undefined) continue;
      if (a.scope === "link" || a.scope === "host") continue;
      const c = canonicalCidr(`${a.local}/${a.prefixlen}`);
      if (c) addresses.push(c);
    }
    const data = l.linkinfo?.info_data;
    links[l.ifname] = {
      name: l.ifname,
      ifIndex: l.ifindex,
      macAddress: (l.address ?? "").toLowerCase(),
      mtu: l.mtu,
      up: l.flags.includes("UP"),
      kind: l.linkinfo?.info_kind,
      master: l.master,
      addresses,
      ...(l.linkinfo?.info_kind === "bridge"
        ? { stp: (data?.stp_state ?? 0) !== 0, vlanFiltering: (data?.vlan_filtering ?? 0) !== 0 }
        : {}),
      ...(l.ifalias !== undefined ? { ifalias: l.ifalias } : {}),
    };
  }
  return links;
}

/** Returns a route's address family: from its addresses, else IPv6 when it has a preference. */
function routeFamily(r: z.infer<typeof IpRoute>): 4 | 6 {
  for (const a of [r.dst, r.gateway, r.prefsrc]) {
    if (a !== undefined && a !== "default") return a.includes(":") ? 6 : 4;
  }
  // a default route without a gateway: the kernel gives every IPv6 route a preference (RTA_PREF)
  return r.pref !== undefined ? 6 : 4;
}

/**
 * Returns the main table's non-kernel routes parsed from `ip -d -j route show table all [dev VIA]`
 * (with VIA, the routes via that device, which `ip` prints without their `dev`).
 */
export function parseRoutes(text: string, via?: string): Route[] {
  return parseMainTableRoutes(IpRoute, text)
    .map((r) =>
      // listed with `dev`, `ip` prints no route's device: each is via that one, unless it has
      // several (a multipath route, which has no `dev` in a full listing either)
      via !== undefined && r.nexthops === undefined ? { ...r, dev: via } : r,
    )
    .filter((r) => r.protocol !== "kernel" && r.dev !== undefined)
    .map((r) => ({
      family: routeFamily(r),
      dst: r.dst,
      dev: r.dev ?? "",
      ...(r.gateway !== undefined ? { gateway: r.gateway } : {}),
      ...(r.protocol !== undefined ? { protocol: r.protocol } : {}),
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
      ...(r.type !== undefined ? { type: r.type } : {}),
      ...(r.scope !== undefined ? { scope: r.scope } : {}),
      ...(r.prefsrc !== undefined ? { prefsrc: r.prefsrc } : {}),
      ...(r.flags?.includes("onlink") ? { flags: ["onlink"] } : {}),
    }));
}

/** Returns whether the provider's own allow pair for the bridge is in bridge.conf. */
export function parseHelperAllowed(conf: string, bridge: string): boolean {
  const lines = conf.split("\n");
  const i = lines.indexOf(helperMarker(bridge));
  return i >= 0 && lines[i + 1]?.trim() === `allow ${bridge}`;
}

/** Returns the ports a bridge recorded (`name` or `name raised` lines) and those it brought up. */
export function parseRecordedPorts(text: string): {
  recordedPorts: string[];
  raisedPorts: string[];
} {
  const lines = text
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([p]) => p !== undefined && p !== "");
  return {
    recordedPorts: lines.map(([p]) => p ?? "").sort(),
    raisedPorts: lines
      .filter(([, flag]) => flag === "raised")
      .map(([p]) => p ?? "")
      .sort(),
  };
}

/** Returns the bridge state parsed from the probe's output. */
export function parseBridgeState(name: string, stdout: string): BridgeState {
  const out = parseProbe(stdout, "the bridge probe");
  // A line per listing: links, routes, the route to the client. The section's argument says how
  // many listings of links come first, then `via` and the devices whose routes follow, one listing
  // each. Without `via` (captures of older probes, a host without sysfs), one listing of every
  // route follows, with each route's device.
  const [count = "", keyword, ...via] = (
    out.sections.find((x) => x.name === "links")?.arg ?? ""
  ).split(" ");
  const n = count === "" ? 1 : Number(count);
  if (!Number.isInteger(n) || n < 0 || (keyword !== undefined && keyword !== "via")) {
    throw new Error(`unexpected output of the bridge probe: links ${count} ${keyword ?? ""}`);
  }
  const r = keyword === "via" ? via.length : 1;
  const listed = ipBatchOutputs(
    out.need("links"),
    n + r + 1,
    n + r,
    "ip -d -j -batch (addr show ..., route show ..., route get)",
  );
  const links: Record<string, Link> = {};
  for (const l of listed.slice(0, n)) Object.assign(links, parseLinks(l));
  const routes =
    keyword === "via"
      ? via.flatMap((dev, i) => parseRoutes(listed[n + i] ?? "", dev))
      : parseRoutes(listed[n] ?? "");
  const sshRoute = listed[n + r] ?? "";
  const link = links[name];
  const bridge = link && link.kind === "bridge" ? link : undefined;
  const ssh = parseHostJson(z.array(IpRoute), sshRoute, "ip -j route get")[0];
  return {
    name,
    bridge,
    ports: Object.values(links)
      .filter((l) => l.master === name)
      .map((l) => l.name)
      .sort(),
    links,
    routes,
    sshInterface: ssh?.dev,
    sshLocalAddress: ssh?.prefsrc,
    helperAllowed: parseHelperAllowed(out.need("bridge-conf"), name),
    // NET_ADDR_SET (3): the address was set, so the kernel keeps it when ports come and go
    macPinned: out.need("addr-assign-type").trim() === "3",
    managers: parseManagerProbe(out),
    keepOff: parseKeepOffProbe(out),
    ...parseRecordedPorts(out.need("ports")),
    persisted: parsePersistProbe(out),
  };
}

/** Returns the bridge's probe: the bridge, its ports and the SSH route in one remote command. */
export function probeBridge(inputs: BridgeInputs, ctx: ObserveContext): ProbeCall {
  return {
    // after a delete the bridge alone: a plan without the bridge reads no port and no route, so a
    // bridge that is gone costs no `ip`
    call:
      ctx.after === "delete"
        ? observeCall(inputs.name, undefined, [])
        : observeCall(inputs.name, ctx.sshClientAddress, inputs.ports),
    units: probeUnits(unitName(BRIDGE_KIND, inputs.name), "active", true),
    // after a create or an update the bridge is there: the probe asks for it with the apply's lines
    ...(ctx.after === "converge" ? { takesIpLines: true } : {}),
  };
}

/** Returns the bridge state from its probe's result. */
export function parseBridgeResult(
  r: RunResult,
  inputs: BridgeInputs,
  ctx: ObserveContext,
): BridgeState {
  const state = parseBridgeState(inputs.name, r.stdout);
  if (inputs.persistence === "auto") warnNoSystemd(ctx.host, state.persisted);
  return { ...state, inputs, ...(ctx.creating ? { creating: true } : {}) };
}

/** Observes the bridge, its ports and the SSH route in one remote command. */
export function observeBridge(
  host: Host,
  inputs: BridgeInputs,
  ctx: ObserveContext,
): Promise<BridgeState> {
  return observeWith({ probe: probeBridge, parse: parseBridgeResult }, host, inputs, ctx);
}
