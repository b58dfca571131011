import { BRIDGE_CONF } from "../../bridge-helper-acl";
import { PlanError } from "../../errors";
import { declareRunsInShell, scriptIn } from "../../host/script";
import { isMarked, markLinkStep, refuseUnmarked } from "../../link-marker";
import { keepOffFiles, keepOffReloads } from "../../persist/keep-off";
import { renderOneshotForm, withPersistence } from "../../persist/oneshot";
import {
  contentHash,
  persists,
  type PersistedForm,
  type PersistedState,
} from "../../persist/persistence";
import type { Step } from "../../step";
import { BRIDGE_KIND, macFile, PORTS_DIR } from "./observe";
import type { BridgeInputs, BridgeState, Route } from "./schema";
import { routeArgv } from "./uplink";
import {
  guardedDetach,
  guardedTakeover,
  managedNics,
  planNicPersistence,
  planNicRestore,
} from "./uplink-plan";

// Reviewed against declareRunsInShell's contract: in a remote shell, apply-batch.sh sources it in
// a subshell instead of starting a shell for it ($$ names a temporary file, which the loop's pid
// does as well: the bridge's host lock keeps two of them apart).
declareRunsInShell("bridge-pin-mac.sh");

/** Returns the step that adds or removes the provider's `allow <bridge>` pair. */
export function helperStep(action: "add" | "remove", bridge: string): Step {
  return {
    summary: `${action === "add" ? "allow" : "stop allowing"} ${bridge} for qemu-bridge-helper in ${BRIDGE_CONF}`,
    script: scriptIn(__dirname, "qemu-bridge-helper.sh", [action, bridge]),
  };
}

/** Returns a step that runs every command even if one fails (so a move never stops half-way). */
function allOrReport(summary: string, commands: string[][]): Step {
  const args = commands.flatMap((c) => [String(c.length), ...c]);
  return { summary, script: scriptIn(__dirname, "run-all.sh", args) };
}

/** Returns the commands that move addresses and routes from one interface to another. */
function moveCommands(addresses: string[], routes: Route[], from: string, to: string): string[][] {
  return [
    ...addresses.flatMap((a) => [
      ["ip", "addr", "del", a, "dev", from],
      ["ip", "addr", "add", a, "dev", to],
    ]),
    ...routes.filter((r) => r.dev === from).map((r) => routeArgv(r, to)),
  ];
}

const portsFile = (name: string): string => `${PORTS_DIR}/${name}.ports`;

// The ports file's lines: a port, and `raised` when the bridge brought it up (parseRecordedPorts).
const recordLines = (ports: readonly string[], raised: readonly string[]): string[] =>
  ports.map((p) => (raised.includes(p) ? `${p} raised` : p));

function forgetPortsStep(name: string): Step {
  return { summary: `forget ${name}'s recorded ports`, argv: ["rm", "-f", "--", portsFile(name)] };
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();
const minus = (a: readonly string[], b: readonly string[]): string[] =>
  a.filter((x) => !b.includes(x));
const on = (b: boolean): string => (b ? "1" : "0");

/** Returns whether the bridge persists as its own unit on this host (auto, systemd, no ports). */
export function persistsOwnUnit(d: BridgeInputs, actual: BridgeState): boolean {
  // A bridge with ports enslaves host NICs, and the NIC's stanza or profile belongs to the host's
  // network manager: such a bridge is persisted through that manager, not by a unit of ours.
  return d.ports.length === 0 && persists(d.persistence, actual.persisted);
}

/** Returns the state of a host without the bridge `name`: what a boot starts from. */
export function absentBridge(
  name: string,
  persisted: PersistedState,
  managers: BridgeState["managers"],
  keepOff: BridgeState["keepOff"],
): BridgeState {
  return {
    name,
    bridge: undefined,
    ports: [],
    links: {},
    routes: [],
    sshInterface: undefined,
    sshLocalAddress: undefined,
    recordedPorts: [],
    raisedPorts: [],
    macPinned: false,
    helperAllowed: false,
    persisted,
    managers,
    keepOff,
  };
}

/** Returns the bridge's unit, boot script and recorded MAC as the provider would write them. */
export function bridgePersistedForm(d: BridgeInputs, actual: BridgeState): PersistedForm {
  const empty = absentBridge(d.name, actual.persisted, actual.managers, actual.keepOff);
  // Refresh and delete see `macAddress` as recorded in the outputs (the observed MAC), so a MAC
  // already recorded in the file counts as the file's: the same boot script either way.
  const file = macFile(d.name);
  const recorded =
    d.macAddress !== undefined && actual.persisted.files[file] === contentHash(`${d.macAddress}\n`);
  const viaFile = d.macAddress === undefined || recorded;
  // Once the live bridge's MAC is pinned, the file holds it; until then the pin step writes it.
  const b = actual.bridge;
  const mac =
    viaFile && b !== undefined && actual.macPinned
      ? [{ path: file, content: `${d.macAddress ?? b.macAddress}\n`, mode: 0o644 }]
      : [];
  const { macAddress: _explicit, ...rest } = d;
  return renderOneshotForm({
    kind: BRIDGE_KIND,
    name: d.name,
    title: `bridge ${d.name}`,
    steps: planConverge(viaFile ? rest : d, empty, true),
    after: ["network-pre.target", "systemd-sysctl.service"],
    before: ["network.target"],
    unlessExists: `/sys/class/net/${d.name}`,
    // A bridge without host NICs is ours alone: a running NetworkManager is told to leave it be.
    extraFiles: [...mac, ...keepOffFiles(BRIDGE_KIND, d.name, actual.keepOff, false)],
  });
}

/** Returns the live steps only: what the kernel and /etc/qemu need, not the persisted layer. */
export function planBridgeLive(desired: BridgeInputs | undefined, actual: BridgeState): Step[] {
  const name = actual.name;
  const existing = actual.links[name];
  if (existing && !actual.bridge) {
    if (desired === undefined) return [];
    throw new PlanError(
      `interface ${JSON.stringify(name)} exists and is not a bridge (kind ${existing.kind ?? "none"}); refusing to touch it`,
    );
  }
  if (desired !== undefined && actual.bridge) {
    refuseUnmarked(
      { type: "Bridge", noun: "bridge", name },
      actual.bridge,
      actual.creating,
      desired.adopt,
    );
  }
  return desired === undefined
    ? planDelete(actual)
    : planConverge(desired, actual, persistsOwnUnit(desired, actual));
}

/** Returns the steps that take the host from `actual` to `desired` (undefined: delete). */
export function planBridge(desired: BridgeInputs | undefined, actual: BridgeState): Step[] {
  const live = planBridgeLive(desired, actual);
  if (desired === undefined) return withPersistence(true, live, undefined, actual.persisted);
  const want = persistsOwnUnit(desired, actual) ? bridgePersistedForm(desired, actual) : undefined;
  return [
    ...withPersistence(false, live, want, actual.persisted),
    ...keepOffReloads(want, actual.persisted, BRIDGE_KIND, desired.name),
  ];
}

/** Returns the steps that bring down ports the bridge brought up, once it let go of them. */
function lowerRaised(name: string, ports: readonly string[], actual: BridgeState): Step[] {
  return ports
    .filter((p) => actual.raisedPorts.includes(p) && actual.links[p]?.up)
    .map((p) => ({
      summary: `bring ${p} down again (it was down before ${name} brought it up)`,
      argv: ["ip", "link", "set", "dev", p, "down"],
    }));
}

function planDelete(actual: BridgeState): Step[] {
  const name = actual.name;
  const steps: Step[] = [...planNicRestore(actual)];
  if (actual.helperAllowed) steps.push(helperStep("remove", name));
  const bridge = actual.bridge;
  const forget = actual.recordedPorts.length > 0 ? [forgetPortsStep(name)] : [];
  if (!bridge) return [...steps, ...forget];
  if (actual.sshInterface === name) {
    const [port, ...others] = actual.ports;
    if (port === undefined || others.length > 0) {
      throw new PlanError(
        `this SSH session runs over bridge ${name} and it has ${actual.ports.length} ports, so its addresses have no single place to go; ` +
          `remove the other ports first or connect through another interface`,
      );
    }
    steps.push(
      allOrReport(
        `move ${name}'s addresses and routes back to ${port} and delete ${name} (carries this SSH session)`,
        [
          ["ip", "link", "set", "dev", port, "nomaster"],
          ["ip", "link", "set", "dev", port, "up"],
          ...moveCommands(bridge.addresses, actual.routes, name, port),
          ["ip", "link", "del", "dev", name],
        ],
      ),
    );
    return [...steps, ...forget];
  }
  steps.push({
    summary: `delete bridge ${name}`,
    argv: ["ip", "link", "del", "dev", name, "type", "bridge"],
  });
  // Deleting the bridge releases its ports as they are: up. Those it raised go back down.
  return [...steps, ...lowerRaised(name, actual.ports, actual), ...forget];
}

function planConverge(d: BridgeInputs, actual: BridgeState, persisted: boolean): Step[] {
  const name = d.name;
  const steps: Step[] = [];
  const b = actual.bridge;
  // After `ip link add` the bridge already has what the add command set.
  const cur = b ?? {
    stp: d.stp,
    vlanFiltering: d.vlanFiltering,
    mtu: d.mtu,
    macAddress: d.macAddress,
    addresses: [] as string[],
    up: false,
  };
  const ports = b ? actual.ports : [];
  const takesSession = d.ports.some((p) => p === actual.sshInterface && !ports.includes(p));
  if (d.stp && !(b && cur.stp) && (actual.sshInterface === name || takesSession)) {
    throw new PlanError(
      `stp on bridge ${name}, which carries this SSH session, would block all its traffic while the ports listen and learn (twice the forward delay, 30 s by default); ` +
        `turn stp on from a session that does not run over ${name}, or leave it off`,
    );
  }
  const managed = managedNics(d, actual.managers).nics;
  // A new bridge taking over the management NIC gets that NIC's MAC, as it will at boot (its only
  // port's): neighbours keep the address's MAC, and a reboot does not change it.
  const takeover = d.ports.find(
    (p) => (managed.includes(p) || p === actual.sshInterface) && actual.links[p]?.addresses.length,
  );
  const createMac = d.macAddress ?? (takeover ? actual.links[takeover]?.macAddress : undefined);
  let nicPersisted = false;
  if (!b) {
    steps.push({
      summary: `create bridge ${name}`,
      argv: [
        "ip",
        "link",
        "add",
        "name",
        name,
        // link options go before `type`: after it, ip parses them as bridge options
        ...(d.mtu !== undefined ? ["mtu", String(d.mtu)] : []),
        ...(createMac !== undefined ? ["address", createMac] : []),
        "type",
        "bridge",
        "stp_state",
        on(d.stp),
        // only when wanted: kernels built without CONFIG_BRIDGE_VLAN_FILTERING reject even "0"
        ...(d.vlanFiltering ? ["vlan_filtering", "1"] : []),
      ],
    });
  }
  // A bridge in the stack without the marker (made by an older version, imported or adopted) gets it.
  if (!b || !isMarked(b.ifalias)) steps.push(markLinkStep(name));
  if (cur.stp !== d.stp) {
    steps.push({
      summary: `set stp ${d.stp ? "on" : "off"} on ${name}`,
      argv: ["ip", "link", "set", "dev", name, "type", "bridge", "stp_state", on(d.stp)],
    });
  }
  if (cur.vlanFiltering !== d.vlanFiltering) {
    steps.push({
      summary: `set vlan filtering ${d.vlanFiltering ? "on" : "off"} on ${name}`,
      argv: [
        "ip",
        "link",
        "set",
        "dev",
        name,
        "type",
        "bridge",
        "vlan_filtering",
        on(d.vlanFiltering),
      ],
    });
  }
  if (d.mtu !== undefined && cur.mtu !== d.mtu) {
    steps.push({
      summary: `set mtu ${d.mtu} on ${name}`,
      argv: ["ip", "link", "set", "dev", name, "mtu", String(d.mtu)],
    });
  }
  if (d.macAddress !== undefined && cur.macAddress !== d.macAddress) {
    steps.push({
      summary: `set mac address ${d.macAddress} on ${name}`,
      argv: ["ip", "link", "set", "dev", name, "address", d.macAddress],
    });
  } else if (d.macAddress === undefined && (!b || !actual.macPinned)) {
    // A bridge whose MAC was never set takes its lowest port's MAC, so it changes whenever a
    // guest's tap comes or goes (neighbours' ARP caches go stale). Keep the one it has.
    steps.push({
      summary: `pin ${name}'s mac address, so ports joining or leaving do not change it`,
      script: scriptIn(__dirname, "bridge-pin-mac.sh", persisted ? [name, macFile(name)] : [name]),
    });
  }

  if (!cur.up) {
    steps.push({ summary: `bring ${name} up`, argv: ["ip", "link", "set", "dev", name, "up"] });
  }

  const moved: string[] = [];
  // Ports the bridge brought up, kept while they stay its ports (to bring them down when released).
  const raised = actual.raisedPorts.filter((p) => ports.includes(p) && d.ports.includes(p));
  for (const port of minus(sorted(d.ports), ports)) {
    const link = actual.links[port];
    if (!link) {
      throw new PlanError(`port ${JSON.stringify(port)} does not exist on the host`, {
        missingLink: port,
      });
    }
    if (link.master !== undefined && link.master !== name) {
      throw new PlanError(`port ${JSON.stringify(port)} is already attached to ${link.master}`);
    }
    const carriesSsh = actual.sshInterface === port;
    if (!link.up) raised.push(port);
    const keep = link.addresses.filter((a) => d.addresses.includes(a));
    if (link.addresses.length > 0 && keep.length === link.addresses.length) {
      moved.push(...keep);
      const move = allOrReport(
        `attach ${port} to ${name}, moving its addresses and routes onto ${name} in one step${carriesSsh ? " (carries this SSH session)" : ""}`,
        [
          ["ip", "link", "set", "dev", port, "master", name],
          ["ip", "link", "set", "dev", port, "up"],
          ...moveCommands(link.addresses, actual.routes, port, name),
        ],
      );
      if (carriesSsh || managed.includes(port)) {
        // The management path changes: a dead-man timer puts it back unless a new login works.
        const why = carriesSsh
          ? "carries this SSH session"
          : "is configured by the host's network manager";
        const persist = nicPersisted ? [] : planNicPersistence(d, actual);
        nicPersisted = true;
        steps.push(...guardedTakeover(d, actual, port, `${port} ${why}`, [move, ...persist]));
      } else {
        steps.push(move);
      }
    } else if (carriesSsh) {
      throw new PlanError(
        `port ${JSON.stringify(port)} carries this SSH session; enslaving it would cut the provider off. ` +
          `Add its addresses (${link.addresses.join(", ") || "none"}) to the bridge's addresses so they move onto ${name} in the same step, or connect through another interface`,
      );
    } else {
      steps.push({
        summary: `attach ${port} to ${name}`,
        argv: ["ip", "link", "set", "dev", port, "master", name],
      });
      if (!link.up)
        steps.push({ summary: `bring ${port} up`, argv: ["ip", "link", "set", "dev", port, "up"] });
    }
  }
  // Only ports this bridge enslaved are detached: taps of TapDevice or qemu-bridge-helper stay.
  const removedPorts = minus(
    ports.filter((p) => actual.recordedPorts.includes(p)),
    d.ports,
  );
  if (
    removedPorts.length > 0 &&
    actual.sshInterface === name &&
    removedPorts.length === ports.length &&
    d.ports.length === 0
  ) {
    throw new PlanError(
      `this SSH session runs over bridge ${name}; detaching all its ports (${removedPorts.join(", ")}) would cut the provider off`,
    );
  }
  const detach = removedPorts.map((port): Step => ({
    summary: `detach ${port} from ${name}`,
    argv: ["ip", "link", "set", "dev", port, "nomaster"],
  }));
  // Which port leads to the SSH client is not known: any detach from a bridge carrying the
  // session may cut it, so it runs under the dead-man timer.
  if (detach.length > 0 && actual.sshInterface === name) {
    // The restore also detaches the ports this change attached: the bridge gets its old ports.
    steps.push(...guardedDetach(d, removedPorts, detach, minus(sorted(d.ports), ports)));
  } else {
    steps.push(...detach, ...lowerRaised(name, removedPorts, actual));
  }

  for (const a of minus(cur.addresses, d.addresses)) {
    if (
      actual.sshInterface === name &&
      actual.sshLocalAddress !== undefined &&
      a.split("/")[0] === actual.sshLocalAddress
    ) {
      throw new PlanError(
        `address ${a} on ${name} carries this SSH session; removing it would cut the provider off`,
      );
    }
    steps.push({
      summary: `remove address ${a} from ${name}`,
      argv: ["ip", "addr", "del", a, "dev", name],
    });
  }
  for (const a of minus(minus(d.addresses, cur.addresses), moved)) {
    steps.push({
      summary: `add address ${a} to ${name}`,
      argv: ["ip", "addr", "add", a, "dev", name],
    });
  }
  if (!nicPersisted) steps.push(...planNicPersistence(d, actual));
  const wanted = recordLines(sorted(d.ports), raised);
  if (wanted.join("\n") !== recordLines(actual.recordedPorts, actual.raisedPorts).join("\n")) {
    steps.push(
      wanted.length > 0
        ? {
            summary: `record ${name}'s ports (${wanted.join(", ")})`,
            writeFile: { path: portsFile(name), content: `${wanted.join("\n")}\n`, mode: 0o644 },
          }
        : forgetPortsStep(name),
    );
  }
  if (d.allowQemuBridgeHelper !== actual.helperAllowed) {
    steps.push(helperStep(d.allowQemuBridgeHelper ? "add" : "remove", name));
  }
  return steps;
}
