// What the booted-host tests share: running a command over SSH that must succeed (lab/booted),
// the shell line that lists files of the provider left on a host, and reading a stack one by one
// and at once.
import type { BootedHost } from "../../lab/booted/booted-host";
import { sshOk } from "../../lab/booted/read";
import type { DynamicProviderPlugin, ResourceState } from "../../lab/engine/engine";

// running a command that must succeed, and systemd's reloads: shared with the bench
export { sshOk, systemdReloads } from "../../lab/booted/read";

// Files of the provider anywhere they could be (units and their enablement links, sysctl.d,
// networkd or NetworkManager snippets), and anything inside its own folders (empty folders may stay).
export const LEFTOVER_FILES =
  "find /etc /run/systemd /var/lib -name '*pulumi-hypervisor*' ! -type d 2>/dev/null; " +
  "find /etc/pulumi-hypervisor /var/lib/pulumi-hypervisor /var/log/pulumi-hypervisor " +
  "-type f 2>/dev/null; true";

/** Returns the provider's failed units on h, one per line ("" when none failed). */
export async function failedProviderUnits(h: BootedHost): Promise<string> {
  // `systemctl --failed PATTERN` takes the pattern for a verb (systemd 252): name the verb.
  const argv = ["systemctl", "list-units", "--failed", "--no-legend", "--plain"];
  return (await sshOk(h, [...argv, "pulumi-hypervisor-*"])).trim();
}

/** Returns each unit's NeedDaemonReload (systemd's unit differs from its file on disk): "no" each. */
export async function needDaemonReload(h: BootedHost, units: readonly string[]): Promise<string[]> {
  const out = await sshOk(h, [
    "systemctl",
    "show",
    "-p",
    "NeedDaemonReload",
    "--value",
    "--",
    ...units,
  ]);
  return out.split("\n").filter((l) => l !== "");
}

/** What a read returns: the resource's id and outputs. */
export interface Read {
  id: string;
  properties: Record<string, unknown>;
}

/** What the stack's resources read on a booted host, one by one and all at once. */
export interface ReadsBothWays {
  /** Each resource's read, one after another: each probe runs alone. */
  alone: Read[];
  /** The same reads sent at once, as a refresh does: one batch of probes. */
  batched: Read[];
  /** How many times `systemctl` ran on the host during each. */
  systemctl: { alone: number; batched: number };
}

/**
 * Reads every resource of the engine's state through the plugin one by one, then all at once,
 * with `disabled`, one of their units, disabled by hand meanwhile (so that the units do not all
 * answer alike), counting the host's `systemctl` runs: a wrapper in front of /usr/bin/systemctl
 * logs each run. The real one is moved aside and the unit disabled, and both are put back in
 * every case.
 */
export async function readsBothWays(
  h: BootedHost,
  plugin: DynamicProviderPlugin,
  states: readonly ResourceState[],
  disabled: string,
): Promise<ReadsBothWays> {
  const log = "/run/systemctl-runs.log";
  const read = (s: ResourceState) => plugin.read(s.id, s.urn, s.outputs, s.inputs);
  const runs = async (): Promise<number> =>
    (await sshOk(h, ["cat", log])).split("\n").filter((l) => l !== "").length;
  try {
    await sshOk(h, ["systemctl", "disable", "--quiet", "--", disabled]);
    await sshOk(h, [
      "sh",
      "-c",
      'mv /usr/bin/systemctl /usr/bin/systemctl.real && : > "$1" && ' +
        'printf \'#!/bin/sh\\necho run >> %s\\nexec /usr/bin/systemctl.real "$@"\\n\' "$1" > /usr/bin/systemctl && ' +
        "chmod 755 /usr/bin/systemctl",
      "sh",
      log,
    ]);
    const alone: Read[] = [];
    for (const s of states) alone.push(await read(s));
    const aloneRuns = await runs();
    await sshOk(h, ["sh", "-c", ': > "$1"', "sh", log]);
    const batched = await Promise.all(states.map(read));
    return { alone, batched, systemctl: { alone: aloneRuns, batched: await runs() } };
  } finally {
    await sshOk(h, [
      "sh",
      "-c",
      'mv /usr/bin/systemctl.real /usr/bin/systemctl; rm -f "$1"; systemctl enable --quiet -- "$2"',
      "sh",
      log,
      disabled,
    ]);
  }
}
