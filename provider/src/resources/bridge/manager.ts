import { z } from "zod";
import type { ProbeOutput } from "../../host/probe";
import type { Route } from "./schema";

/** The `nicManager` input: which of the host's network managers persists a NIC the bridge takes over. */
export const NicManager = z
  .enum(["auto", "ifupdown", "networkd", "networkmanager", "none"])
  .default("auto")
  .describe(
    'Which of the host\'s own network managers persists a port that it already configures (the NIC carrying the SSH session, `eno1` with the host\'s address): "auto" detects it (NetworkManager, then systemd-networkd, then ifupdown); "none" changes only the live state, which a reboot loses.',
  );
export type NicManager = z.infer<typeof NicManager>;

/** What a network manager needs to bring the bridge and its NICs back. */
export interface ManagedBridge {
  readonly bridge: string;
  readonly nics: readonly string[];
  readonly addresses: readonly string[];
  /** The routes that moved with the NIC to the bridge. */
  readonly routes: readonly Route[];
  readonly stp: boolean;
  readonly mtu: number | undefined;
  readonly macAddress: string | undefined;
}

/** A manager the provider persists a NIC through. */
export type ManagerKind = "ifupdown" | "networkd" | "networkmanager";

/** Where the provider keeps, per bridge, the manager it used and the NIC configuration it replaced. */
export const NIC_BACKUP_DIR = "/etc/pulumi-hypervisor/bridge-nic";

/** What the host's network managers say, as the bridge probe saw it. */
export interface ManagerState {
  /** NetworkManager's devices with their profile ("" when it leaves the device alone). */
  readonly nm: Readonly<Record<string, string>> | undefined;
  /** systemd-networkd's links and their setup state ("configured", "unmanaged", ...). */
  readonly networkd: Readonly<Record<string, string>> | undefined;
  /** "ifupdown", "ifupdown2", "ifupdown bridge-utils", or "" when not installed. */
  readonly ifupdown: string;
  /** Every ifupdown file by path, /etc/network/interfaces first. */
  readonly ifupdownFiles: Readonly<Record<string, string>>;
  /** The provider's networkd files of this bridge by path. */
  readonly networkdFiles: Readonly<Record<string, string>>;
  /** What the provider recorded when it took the NIC over, if it did. */
  readonly backup: NicBackup | undefined;
}

/** The managers' state on a host where no network manager owns a NIC and none was taken over. */
export const NO_MANAGERS: ManagerState = {
  nm: undefined,
  networkd: undefined,
  ifupdown: "",
  ifupdownFiles: {},
  networkdFiles: {},
  backup: undefined,
};

/** What the provider recorded when it took a NIC over: the manager, and the file it edited. */
export interface NicBackup {
  readonly manager: ManagerKind;
  /** The file it edited ("" when it edited none, as with networkd and NetworkManager). */
  readonly path: string;
  /** That file's content before the edit. */
  readonly original: string;
}

function table(body: string | undefined, split: (line: string) => [string, string] | undefined) {
  if (body === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const line of body.split("\n")) {
    const kv = line.trim() === "" ? undefined : split(line);
    if (kv) out[kv[0]] = kv[1];
  }
  return out;
}

/** Returns the managers' state from a probe that ran `manager_probe` (manager-probe.sh). */
export function parseManagerProbe(probe: ProbeOutput): ManagerState {
  const nmBody = probe.get("nm");
  const ndBody = probe.get("networkd");
  const manager = (probe.get("nic-manager") ?? "").trim();
  const files = (name: string): Record<string, string> =>
    Object.fromEntries(probe.all(name).map((s) => [s.arg, s.body]));
  return {
    // nmcli -t: DEVICE:STATE:CONNECTION
    nm:
      nmBody === undefined || nmBody.trim() === ""
        ? undefined
        : table(nmBody, (l) => {
            const [dev, state, ...con] = l.split(":");
            if (dev === undefined) return undefined;
            return [dev, state === "unmanaged" ? "" : con.join(":")];
          }),
    // networkctl list: IDX LINK TYPE OPERATIONAL SETUP
    networkd:
      ndBody === undefined || ndBody.trim() === ""
        ? undefined
        : table(ndBody, (l) => {
            const w = l.trim().split(/\s+/);
            return w[1] !== undefined && w[4] !== undefined ? [w[1], w[4]] : undefined;
          }),
    ifupdown: (probe.get("ifupdown") ?? "").trim(),
    ifupdownFiles: files("ifupdown-file"),
    networkdFiles: files("networkd-file"),
    backup:
      manager === "ifupdown" || manager === "networkd" || manager === "networkmanager"
        ? {
            manager,
            path: (probe.get("nic-backup-path") ?? "").trim(),
            original: probe.get("nic-backup") ?? "",
          }
        : undefined,
  };
}

/** Returns the manager that configures the NIC, or undefined when none does. */
export function detectManager(nic: string, m: ManagerState): ManagerKind | undefined {
  if (m.nm?.[nic]) return "networkmanager";
  if (m.networkd?.[nic] === "configured") return "networkd";
  if (findIfaceFile(nic, m.ifupdownFiles) !== undefined) return "ifupdown";
  return undefined;
}

/** Returns the manager to persist the NIC through, from the input and the host. */
export function managerFor(
  input: NicManager,
  nic: string,
  m: ManagerState,
): ManagerKind | undefined {
  if (input === "none") return undefined;
  if (input === "auto") return detectManager(nic, m);
  return input;
}

/** Returns the ifupdown file holding an `iface NIC` stanza, or undefined. */
export function findIfaceFile(
  nic: string,
  files: Readonly<Record<string, string>>,
): string | undefined {
  const re = new RegExp(`^\\s*iface\\s+${nic.replace(/[.]/g, "\\.")}\\s`);
  return Object.keys(files).find((p) => (files[p] ?? "").split("\n").some((l) => re.test(l)));
}
