import { guarded, type Guard } from "../../deadman/deadman";
import { PlanError } from "../../errors";
import type { Step } from "../../step";
import {
  managerFor,
  NIC_BACKUP_DIR,
  type ManagedBridge,
  type ManagerKind,
  type ManagerState,
} from "./manager";
import {
  editNicStanza,
  ifupdownBridgePath,
  readIfaceStanza,
  renderIfupdownBridge,
} from "./manager-ifupdown";
import { renderNetworkdFiles } from "./manager-networkd";
import { planNmBridge, planNmUnbridge } from "./manager-nm";
import type { BridgeInputs, BridgeState, Route } from "./schema";
import { routeArgv } from "./uplink";

const backupDir = (bridge: string): string => `${NIC_BACKUP_DIR}/${bridge}`;

/** Returns the NIC ports of the bridge that a network manager of the host persists, and which. */
export function managedNics(
  d: BridgeInputs,
  m: ManagerState,
): { nics: string[]; kind: ManagerKind | undefined } {
  const b = m.backup;
  if (b) {
    const nics = d.ports.filter((p) =>
      b.manager === "ifupdown"
        ? readIfaceStanza(b.original, p) !== undefined
        : managerFor(b.manager, p, m) !== undefined,
    );
    return { nics, kind: b.manager };
  }
  const kinds = d.ports
    .map((p) => [p, managerFor(d.nicManager, p, m)] as const)
    .filter(([, k]) => k !== undefined);
  const distinct = [...new Set(kinds.map(([, k]) => k))];
  if (distinct.length > 1) {
    throw new PlanError(
      `ports ${kinds.map(([p, k]) => `${p} (${k})`).join(", ")} are configured by different network managers; set nicManager to the one that should persist the bridge`,
    );
  }
  return { nics: kinds.map(([p]) => p), kind: distinct[0] };
}

function routesOf(actual: BridgeState, devs: readonly string[]): Route[] {
  return actual.routes.filter((r) => devs.includes(r.dev));
}

/**
 * Returns the steps that persist the bridge and its managed NICs through the host's manager:
 * only what differs from the host, and the NIC's original configuration kept first.
 */
export function planNicPersistence(d: BridgeInputs, actual: BridgeState): Step[] {
  const m = actual.managers;
  const { nics, kind } = managedNics(d, m);
  if (kind === undefined || nics.length === 0) return [];
  const dir = backupDir(d.name);
  const routes = routesOf(actual, [d.name, ...nics]);
  const managed: ManagedBridge = {
    bridge: d.name,
    nics,
    addresses: d.addresses,
    routes,
    stp: d.stp,
    mtu: d.mtu,
    macAddress: d.macAddress ?? actual.links[nics[0] ?? ""]?.macAddress,
  };
  const steps: Step[] = [];
  const backup = (path: string, original: string): void => {
    if (m.backup) return;
    steps.push(
      {
        summary: `keep a backup of ${path || "the NIC's configuration"} in ${dir}`,
        writeFile: { path: `${dir}/original`, content: original, mode: 0o600 },
      },
      {
        summary: `record ${path}`,
        writeFile: { path: `${dir}/path`, content: `${path}\n`, mode: 0o600 },
      },
      {
        summary: `record that ${kind} persists ${d.name}`,
        writeFile: { path: `${dir}/manager`, content: `${kind}\n`, mode: 0o600 },
      },
    );
  };
  if (kind === "ifupdown") {
    const nic = nics[0] ?? "";
    if (nics.length > 1)
      throw new PlanError(`ifupdown persistence takes one NIC per bridge, not ${nics.join(", ")}`);
    const path =
      m.backup?.path ??
      Object.keys(m.ifupdownFiles).find(
        (p) => readIfaceStanza(m.ifupdownFiles[p] ?? "", nic) !== undefined,
      );
    if (path === undefined)
      throw new PlanError(`no ifupdown stanza for ${nic} in /etc/network/interfaces(.d)`);
    const original = m.backup?.original ?? m.ifupdownFiles[path] ?? "";
    const main = m.ifupdownFiles["/etc/network/interfaces"] ?? "";
    if (!/^\s*source(-directory)?\s+\/etc\/network\/interfaces\.d/m.test(main)) {
      throw new PlanError(
        `/etc/network/interfaces does not read /etc/network/interfaces.d, where the bridge's stanza goes; add "source /etc/network/interfaces.d/*" to it`,
      );
    }
    backup(path, original);
    const edited = editNicStanza(original, nic);
    if (m.ifupdownFiles[path] !== edited) {
      steps.push({
        summary: `make ${nic}'s stanza in ${path} "inet manual": its addresses move to ${d.name}`,
        writeFile: { path, content: edited, mode: 0o644 },
      });
    }
    const stanzaPath = ifupdownBridgePath(d.name);
    const stanza = renderIfupdownBridge({
      ...managed,
      carried: readIfaceStanza(original, nic)?.carried ?? [],
      flavour: m.ifupdown,
    });
    if (m.ifupdownFiles[stanzaPath] !== stanza) {
      steps.push({
        summary: `write ${d.name}'s ifupdown stanza to ${stanzaPath}`,
        writeFile: { path: stanzaPath, content: stanza, mode: 0o644 },
      });
    }
    return steps;
  }
  if (kind === "networkd") {
    backup("", "");
    const files = renderNetworkdFiles(managed);
    const changed = Object.entries(files).filter(([p, c]) => m.networkdFiles[p] !== c);
    for (const [path, content] of changed) {
      steps.push({
        summary: `write networkd file ${path}`,
        writeFile: { path, content, mode: 0o644 },
      });
    }
    if (changed.length > 0)
      steps.push({
        summary: "make systemd-networkd read its files again",
        argv: ["networkctl", "reload"],
      });
    return steps;
  }
  if (m.backup) return steps;
  backup("", "");
  const gw = (fam: 4 | 6): string | undefined =>
    routes.find((r) => r.family === fam && r.dst === "default")?.gateway;
  steps.push(...planNmBridge({ ...managed, gateway4: gw(4), gateway6: gw(6) }));
  return steps;
}

/** Returns the files the NIC persistence of this bridge may write (snapshotted by the timer). */
export function nicPersistenceFiles(d: BridgeInputs, actual: BridgeState): string[] {
  const m = actual.managers;
  const dir = backupDir(d.name);
  const own = [`${dir}/original`, `${dir}/path`, `${dir}/manager`];
  const ifupdown = Object.keys(m.ifupdownFiles).filter((p) =>
    d.ports.some((n) => readIfaceStanza(m.ifupdownFiles[p] ?? "", n)),
  );
  const networkd = Object.keys(
    renderNetworkdFiles({
      bridge: d.name,
      nics: d.ports,
      addresses: [],
      routes: [],
      stp: false,
      mtu: undefined,
      macAddress: undefined,
    }),
  );
  return [...own, ...ifupdown, ifupdownBridgePath(d.name), ...networkd];
}

/** Returns the steps that give a NIC its own persisted configuration back (delete). */
export function planNicRestore(actual: BridgeState): Step[] {
  const b = actual.managers.backup;
  if (!b) return [];
  const name = actual.name;
  const steps: Step[] = [];
  if (b.manager === "ifupdown") {
    if (b.path !== "")
      steps.push({
        summary: `put back ${b.path} as it was before ${name} took its NIC over`,
        writeFile: { path: b.path, content: b.original, mode: 0o644 },
      });
    steps.push({
      summary: `remove ${name}'s ifupdown stanza`,
      argv: ["rm", "-f", "--", ifupdownBridgePath(name)],
    });
  } else if (b.manager === "networkd") {
    const files = Object.keys(actual.managers.networkdFiles);
    if (files.length > 0)
      steps.push(
        { summary: `remove ${name}'s networkd files`, argv: ["rm", "-f", "--", ...files] },
        { summary: "make systemd-networkd read its files again", argv: ["networkctl", "reload"] },
      );
  } else {
    steps.push(...planNmUnbridge(name, actual.ports));
  }
  steps.push({
    summary: `remove the backup in ${backupDir(name)}`,
    argv: ["rm", "-rf", "--", backupDir(name)],
  });
  return steps;
}

/**
 * Returns the move of a NIC that carries the session or that a manager configures, run under the
 * dead-man timer: if no new login works over the bridge, the host puts the NIC, its addresses,
 * its routes (with every attribute) and its manager's files back by itself.
 */
export function guardedTakeover(
  d: BridgeInputs,
  actual: BridgeState,
  port: string,
  reason: string,
  change: readonly Step[],
): Step[] {
  const link = actual.links[port];
  const addresses = link?.addresses ?? [];
  const restore: Step[] = [
    { summary: `detach ${port}`, argv: ["ip", "link", "set", "dev", port, "nomaster"] },
    { summary: `bring ${port} up`, argv: ["ip", "link", "set", "dev", port, "up"] },
    ...addresses.flatMap((a): Step[] => [
      { summary: `remove ${a} from ${d.name}`, argv: ["ip", "addr", "del", a, "dev", d.name] },
      { summary: `put ${a} back on ${port}`, argv: ["ip", "addr", "add", a, "dev", port] },
    ]),
    ...routesOf(actual, [port]).map((r): Step => ({
      summary: `put the route to ${r.dst} back on ${port}`,
      argv: routeArgv(r, port),
    })),
    ...(actual.bridge
      ? []
      : [{ summary: `delete ${d.name}`, argv: ["ip", "link", "del", "dev", d.name] }]),
  ];
  const guard: Guard = {
    id: `bridge-${d.name}-${port}`,
    seconds: d.rollbackSeconds,
    reason,
    restore,
    files: nicPersistenceFiles(d, actual),
  };
  return guarded(guard, change);
}

/**
 * Returns the detach of ports from a bridge carrying the session, under the dead-man timer; its
 * restore attaches them again and detaches `attached`, the ports the same change added, so the
 * bridge is back to its old ports.
 */
export function guardedDetach(
  d: BridgeInputs,
  ports: readonly string[],
  change: readonly Step[],
  attached: readonly string[] = [],
): Step[] {
  return guarded(
    {
      id: `bridge-${d.name}-ports`,
      seconds: d.rollbackSeconds,
      reason: `${d.name} carries this SSH session and loses ${ports.join(", ")}`,
      restore: [
        ...ports.map((p): Step => ({
          summary: `attach ${p} to ${d.name} again`,
          argv: ["ip", "link", "set", "dev", p, "master", d.name],
        })),
        ...attached.map((p): Step => ({
          summary: `detach ${p}, which the change attached`,
          argv: ["ip", "link", "set", "dev", p, "nomaster"],
        })),
      ],
      files: [],
    },
    change,
  );
}
