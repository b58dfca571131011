import { PlanError } from "../../errors";
import { declareRunsInShell, scriptIn } from "../../host/script";
import { isMarked, markLinkStep, refuseUnmarked } from "../../link-marker";
import { ipFamilyOf } from "../../net";
import { keepOffFiles, keepOffReloads, withKeepOff } from "../../persist/keep-off";
import { renderOneshotForm, withPersistence } from "../../persist/oneshot";
import { persists, type PersistedForm } from "../../persist/persistence";
import { unitName } from "../../persist/systemd-unit";
import type { Step } from "../../step";
import { claimSysctl, releaseSysctl } from "../../sysctl";
import { claimOwner, DEFAULT_PROXY_ARP, IP_FORWARD, proxyArpKey, TAP_KIND } from "./observe";
import type { HostRoute, TapDeviceInputs, TapDeviceState, TapHolder, TapLink } from "./schema";

// Reviewed against declareRunsInShell's contract: in a remote shell, apply-batch.sh sources it in
// a subshell instead of starting a shell for it.
declareRunsInShell("tap-delete.sh");

// The tap's own proxy_arp lives and dies with the tap, which this resource owns, so it is set
// directly rather than claimed: a claim would outlive a tap deleted by hand, and releasing it
// would then write to a /proc/sys file that no longer exists.

// The tun driver's default MTU (ETH_DATA_LEN): what a tap has right after `ip tuntap add`.
const TAP_DEFAULT_MTU = 1500;

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

// A look-only state (a refresh, the look after an apply) did not scan for holders; it is only
// compared with a plan, never applied, so it counts as held by nobody.
function holdersOf(actual: TapDeviceState): readonly TapHolder[] {
  return actual.holders ?? [];
}

function holdersText(holders: readonly TapHolder[]): string {
  return holders.map((h) => `pid ${h.pid} (${h.command || "command unknown"})`).join(", ");
}

function prefixOf(r: { family: 4 | 6 }): string {
  return r.family === 4 ? "32" : "128";
}

function routeArgv(action: "replace" | "del", address: string, dev: string): string[] {
  const family = ipFamilyOf(address);
  return [
    "ip",
    ...(family === 6 ? ["-6"] : []),
    "route",
    action,
    `${address}/${prefixOf({ family })}`,
    "dev",
    dev,
    "proto",
    "static",
  ];
}

/** Returns the step that deletes the tap; the kernel refuses it (EBUSY) while a process holds a single-queue tap. */
// `ip tuntap del`, then a wait until the kernel has unregistered the link (tap-delete.sh).
function deleteTapStep(tap: TapLink, summary: string): Step {
  return {
    summary,
    script: scriptIn(__dirname, "tap-delete.sh", [
      tap.name,
      ...(tap.multiQueue ? ["multi_queue"] : []),
    ]),
  };
}

/** Returns the uid/gid the tap should have (-1: none), or throws when a name is unknown on the host. */
function wantedId(
  account: string | null,
  resolved: number | null | undefined,
  what: "owner" | "group",
): number {
  if (account === null) return -1;
  if (/^\d+$/.test(account)) return Number(account);
  if (typeof resolved !== "number") {
    throw new PlanError(
      `${what} ${JSON.stringify(account)} is not a ${what === "owner" ? "user" : "group"} on the host`,
    );
  }
  return resolved;
}

function idText(id: number | undefined): string {
  return id === undefined || id < 0 ? "none" : String(id);
}

/** Returns the host routes via the tap that the provider manages (it adds them `proto static`). */
export function managedRoutes(actual: TapDeviceState): HostRoute[] {
  return actual.hostRoutes.filter(
    (r) => r.dev === actual.name && r.protocol === "static" && r.type === "unicast",
  );
}

/** Returns the sysctl keys this tap holds claims on. */
export function claimedKeys(actual: TapDeviceState): string[] {
  return sorted(
    Object.entries(actual.sysctls)
      .filter(([, o]) => o.claimed)
      .map(([k]) => k),
  );
}

/**
 * Returns the tap's unit and boot script as the provider would write them: the create plan
 * against a host that has only the tap's surroundings (its bridge, its uplink, the names it
 * resolved), ordered after its bridge's unit when the bridge is the provider's.
 */
export function tapPersistedForm(d: TapDeviceInputs, actual: TapDeviceState): PersistedForm {
  const around = [d.bridge, d.routed?.proxyArpInterface].filter(
    (n): n is string => n !== null && n !== undefined && n !== d.name,
  );
  const links = Object.fromEntries(
    around.flatMap((n) => (actual.links[n] ? [[n, actual.links[n]] as const] : [])),
  );
  const hostDefault = actual.sysctls[DEFAULT_PROXY_ARP];
  const empty: TapDeviceState = {
    name: d.name,
    tap: undefined,
    links,
    hostRoutes: [],
    sysctls: hostDefault !== undefined ? { [DEFAULT_PROXY_ARP]: hostDefault } : {},
    ownerId: undefined,
    groupId: undefined,
    resolvedUid: actual.resolvedUid,
    resolvedGid: actual.resolvedGid,
    holders: [],
    persisted: actual.persisted,
    bridgeUnit: actual.bridgeUnit,
    keepOff: actual.keepOff,
  };
  const early = ["network-pre.target", "systemd-sysctl.service"];
  const bridgeUnit =
    d.bridge !== null && actual.bridgeUnit ? unitName("bridge", d.bridge) : undefined;
  // A bridge that is not the provider's comes from the host's network manager, which has it up
  // by network.target (ifupdown's networking.service runs before it).
  const order =
    bridgeUnit !== undefined
      ? { after: [bridgeUnit, ...early], wants: [bridgeUnit], before: ["network.target"] }
      : d.bridge !== null
        ? { after: ["network.target"], before: [] }
        : { after: early, before: ["network.target"] };
  const form = renderOneshotForm({
    kind: TAP_KIND,
    name: d.name,
    title: `tap ${d.name}`,
    steps: planConverge(d, empty),
    ...order,
    unlessExists: `/sys/class/net/${d.name}`,
  });
  return withKeepOff(form, keepOffFiles(TAP_KIND, d.name, actual.keepOff, true));
}

/** Returns the live steps only: the tap, its routes and sysctls, not the persisted layer. */
export function planTapDeviceLive(
  desired: TapDeviceInputs | undefined,
  actual: TapDeviceState,
): Step[] {
  const name = actual.name;
  const existing = actual.links[name];
  if (existing && !actual.tap) {
    if (desired === undefined) return releaseAll(actual);
    const what =
      existing.kind === "tun"
        ? `a tun device in ${existing.tunType ?? "unknown"} mode`
        : `kind ${existing.kind ?? "none"}`;
    throw new PlanError(
      `interface ${JSON.stringify(name)} exists and is not a tap (${what}); refusing to touch it`,
    );
  }
  if (desired !== undefined && actual.tap) {
    refuseUnmarked(
      { type: "TapDevice", noun: "tap", name },
      actual.tap,
      actual.creating,
      desired.adopt,
    );
  }
  return desired === undefined ? planDelete(actual) : planConverge(desired, actual);
}

/** Returns the steps that take the host from `actual` to `desired` (undefined: delete). */
export function planTapDevice(
  desired: TapDeviceInputs | undefined,
  actual: TapDeviceState,
): Step[] {
  const live = planTapDeviceLive(desired, actual);
  if (desired === undefined) return withPersistence(true, live, undefined, actual.persisted);
  const want = persists(desired.persistence, actual.persisted)
    ? tapPersistedForm(desired, actual)
    : undefined;
  return [
    ...withPersistence(false, live, want, actual.persisted),
    ...keepOffReloads(want, actual.persisted, TAP_KIND, desired.name),
  ];
}
function releaseAll(actual: TapDeviceState): Step[] {
  return claimedKeys(actual).map((k) => releaseSysctl(k, claimOwner(actual.name)));
}

function planDelete(actual: TapDeviceState): Step[] {
  const tap = actual.tap;
  if (tap && holdersOf(actual).length > 0) {
    throw new PlanError(
      `${tap.name} is in use by ${holdersText(holdersOf(actual))}; stop that process before deleting the tap`,
    );
  }
  // Claims go first: the uplink's proxy_arp and ip_forward are restored while the tap still exists.
  const steps = releaseAll(actual);
  if (tap) steps.push(deleteTapStep(tap, `delete tap ${tap.name}`));
  return steps;
}

function planConverge(d: TapDeviceInputs, actual: TapDeviceState): Step[] {
  const name = d.name;
  const steps: Step[] = [];
  const uid = wantedId(d.owner, actual.resolvedUid, "owner");
  const gid = wantedId(d.group, actual.resolvedGid, "group");
  let tap = actual.tap;

  if (tap) {
    if (!tap.persist) {
      throw new PlanError(
        `${name} exists but is not persistent: it belongs to ${holdersText(holdersOf(actual)) || "the process that opened it"} and goes away when that exits; ` +
          `let the provider create the tap before starting the process`,
      );
    }
    // `ip tuntap add` sets IFF_TUN_EXCL, so it fails with EBUSY on an existing tap: the
    // multi_queue flag, owner and group are only set when the tap is created (TUNSETOWNER and
    // TUNSETGROUP need an fd attached to the tap, which `ip` cannot give). A tap that differs
    // is recreated, which is also what a change of those inputs does (they are identity).
    // vnet_hdr is not compared: every process that attaches (QEMU by default) sets it to what it
    // asks for in TUNSETIFF and the kernel keeps that after the process exits.
    const differs: string[] = [];
    if (tap.multiQueue !== d.multiQueue) {
      differs.push(
        `multi_queue is ${tap.multiQueue ? "on" : "off"}, wanted ${d.multiQueue ? "on" : "off"}`,
      );
    }
    if ((actual.ownerId ?? -1) !== uid)
      differs.push(`owner is ${idText(actual.ownerId)}, wanted ${idText(uid)}`);
    if ((actual.groupId ?? -1) !== gid)
      differs.push(`group is ${idText(actual.groupId)}, wanted ${idText(gid)}`);
    if (differs.length > 0) {
      if (holdersOf(actual).length > 0) {
        throw new PlanError(
          `${name} must be recreated (${differs.join("; ")}) but is in use by ${holdersText(holdersOf(actual))}; stop that process first`,
        );
      }
      steps.push(deleteTapStep(tap, `delete tap ${name} to recreate it (${differs.join("; ")})`));
      tap = undefined;
    }
  }

  if (!tap) {
    const flags = [
      ...(uid >= 0 ? ["user", String(uid)] : []),
      ...(gid >= 0 ? ["group", String(gid)] : []),
      ...(d.multiQueue ? ["multi_queue"] : []),
      ...(d.vnetHdr ? ["vnet_hdr"] : []),
    ];
    steps.push({
      summary: `create tap ${name}${flags.length ? ` (${flags.join(" ")})` : ""}`,
      argv: ["ip", "tuntap", "add", "dev", name, "mode", "tap", ...flags],
    });
  }
  // A tap in the stack without the marker (made by an older version, imported or adopted) gets it.
  if (!tap || !isMarked(tap.ifalias)) steps.push(markLinkStep(name));

  const mtu = tap ? tap.mtu : TAP_DEFAULT_MTU;
  if (d.mtu !== undefined && mtu !== d.mtu) {
    steps.push({
      summary: `set mtu ${d.mtu} on ${name}`,
      argv: ["ip", "link", "set", "dev", name, "mtu", String(d.mtu)],
    });
  }

  const master = tap?.master;
  if (d.bridge !== null && master !== d.bridge) {
    const bridge = actual.links[d.bridge];
    if (!bridge) {
      throw new PlanError(`bridge ${JSON.stringify(d.bridge)} does not exist on the host`, {
        missingLink: d.bridge,
      });
    }
    if (bridge.kind !== "bridge") {
      throw new PlanError(
        `bridge ${JSON.stringify(d.bridge)} is not a bridge (kind ${bridge.kind ?? "none"})`,
      );
    }
    steps.push({
      summary:
        master !== undefined
          ? `move ${name} from ${master} to ${d.bridge}`
          : `attach ${name} to ${d.bridge}`,
      argv: ["ip", "link", "set", "dev", name, "master", d.bridge],
    });
  } else if (d.bridge === null && master !== undefined) {
    steps.push({
      summary: `detach ${name} from ${master}`,
      argv: ["ip", "link", "set", "dev", name, "nomaster"],
    });
  }

  if (!tap?.up)
    steps.push({ summary: `bring ${name} up`, argv: ["ip", "link", "set", "dev", name, "up"] });

  const want = d.routed?.addresses ?? [];
  const have = tap ? managedRoutes(actual).map((r) => r.address) : [];
  for (const a of have.filter((x) => !want.includes(x))) {
    steps.push({
      summary: `remove host route ${a}/${prefixOf({ family: ipFamilyOf(a) })} via ${name}`,
      argv: routeArgv("del", a, name),
    });
  }
  for (const a of want.filter((x) => !have.includes(x))) {
    if (a === actual.sshClientAddress) {
      throw new PlanError(
        `routed.addresses: ${a} is the address this SSH session comes from; a host route via ${name} would send the session's replies into the tap and cut the provider off. ` +
          `Remove it, or manage the host from another address`,
      );
    }
    const clash = actual.hostRoutes.find((r) => r.address === a && r.dev !== name);
    if (clash) {
      throw new PlanError(
        `routed.addresses: ${a} is already routed ${clash.dev !== undefined ? `via ${clash.dev}` : `(${clash.type})`}; remove that route or that address`,
      );
    }
    steps.push({
      summary: `add host route ${a}/${prefixOf({ family: ipFamilyOf(a) })} via ${name}`,
      argv: routeArgv("replace", a, name),
    });
  }

  // Without routed proxy ARP the tap's proxy_arp is what a new interface starts with. The probe
  // reads no values for a tap that is not routed, does not exist and holds no claims: then both
  // sides are "0" and nothing is set, as with the values read.
  const uplink = d.routed?.proxyArpInterface;
  const hostDefault = actual.sysctls[DEFAULT_PROXY_ARP]?.value ?? "0";
  const wantProxy = uplink !== undefined ? "1" : /^\d+$/.test(hostDefault) ? hostDefault : "0";
  const tapProxy = tap ? actual.sysctls[proxyArpKey(name)]?.value : hostDefault;
  if (tapProxy !== wantProxy) {
    steps.push({
      summary: `set net.ipv4.conf.${name}.proxy_arp=${wantProxy}`,
      script: scriptIn(__dirname, "tap-set-proxy-arp.sh", [name, wantProxy]),
    });
  }

  const owner = claimOwner(name);
  const wanted: string[] = [];
  if (uplink !== undefined) {
    if (!actual.links[uplink]) {
      throw new PlanError(
        `routed.proxyArpInterface ${JSON.stringify(uplink)} does not exist on the host`,
        { missingLink: uplink },
      );
    }
    wanted.push(IP_FORWARD, proxyArpKey(uplink));
  }
  for (const k of wanted) {
    const o = actual.sysctls[k];
    if (!o?.claimed || o.value !== "1") steps.push(claimSysctl(k, owner));
  }
  for (const k of claimedKeys(actual).filter((x) => !wanted.includes(x))) {
    steps.push(releaseSysctl(k, owner));
  }
  return steps;
}
