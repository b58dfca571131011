import type { ProbeOutput } from "../host/probe";
import type { Step } from "../step";
import {
  driftedFiles,
  type PersistedFile,
  type PersistedForm,
  type PersistedState,
} from "./persistence";

/** The host's network managers that run and would otherwise take the provider's devices. */
export interface RunningManagers {
  readonly networkManager: boolean;
  readonly networkd: boolean;
}

/** Returns which managers run, from a probe that ran `keepoff_probe` (keepoff-probe.sh). */
export function parseKeepOffProbe(probe: ProbeOutput): RunningManagers {
  return {
    networkManager: (probe.get("keepoff-nm") ?? "").trim() === "yes",
    networkd: (probe.get("keepoff-networkd") ?? "").trim() === "yes",
  };
}

/** Returns the NetworkManager drop-in that marks one device of the provider's unmanaged. */
export function nmKeepOffPath(kind: string, name: string): string {
  return `/etc/NetworkManager/conf.d/pulumi-hypervisor-${kind}-${name}.conf`;
}

/** Returns the networkd file (sorting before the distribution's) that leaves one device alone. */
export function networkdKeepOffPath(kind: string, name: string): string {
  return `/etc/systemd/network/04-pulumi-hypervisor-${kind}-${name}.network`;
}

/** Returns every keep-off file an object may have, for the persist probe (present or not). */
export function keepOffPaths(kind: string, name: string, networkd: boolean): string[] {
  return [nmKeepOffPath(kind, name), ...(networkd ? [networkdKeepOffPath(kind, name)] : [])];
}

const HEADER =
  "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.";

/**
 * Returns the files that keep the running managers off a device: NetworkManager leaves it
 * unmanaged, networkd (with `networkd`) leaves the link alone, so it never runs DHCP on it.
 */
export function keepOffFiles(
  kind: string,
  name: string,
  running: RunningManagers,
  networkd: boolean,
): PersistedFile[] {
  const files: PersistedFile[] = [];
  if (running.networkManager) {
    // `+=` appends to the list other conf.d files set instead of replacing it.
    files.push({
      path: nmKeepOffPath(kind, name),
      content: `${HEADER}\n[keyfile]\nunmanaged-devices+=interface-name:${name}\n`,
      mode: 0o644,
    });
  }
  if (networkd && running.networkd) {
    files.push({
      path: networkdKeepOffPath(kind, name),
      content: `${HEADER}\n[Match]\nName=${name}\n\n[Link]\nUnmanaged=yes\n`,
      mode: 0o644,
    });
  }
  return files;
}

/** Returns the form with the keep-off files added to the files it persists. */
export function withKeepOff(form: PersistedForm, files: readonly PersistedFile[]): PersistedForm {
  return files.length === 0 ? form : { ...form, files: [...form.files, ...files] };
}

/** Returns the reloads that make the running managers read keep-off files about to be written. */
export function keepOffReloads(
  want: PersistedForm | undefined,
  state: PersistedState,
  kind: string,
  name: string,
): Step[] {
  if (want === undefined || !state.systemd) return [];
  const changed = new Set(driftedFiles(want, state).map((f) => f.path));
  const steps: Step[] = [];
  if (changed.has(nmKeepOffPath(kind, name))) {
    steps.push({
      summary: `make NetworkManager reread its configuration (${name} unmanaged)`,
      argv: ["nmcli", "general", "reload", "conf"],
    });
  }
  if (changed.has(networkdKeepOffPath(kind, name))) {
    steps.push({
      summary: `make systemd-networkd reread its configuration (${name} left alone)`,
      argv: ["networkctl", "reload"],
    });
  }
  return steps;
}
