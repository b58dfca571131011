import type { Step } from "../step";
import { stepScriptLines } from "../step-script";

/** Where the provider's units live: the admin's directory, as `systemctl enable` expects. */
export const UNIT_DIR = "/etc/systemd/system";
/** Where the provider keeps what a unit runs at boot, one folder per resource kind. */
export const PERSIST_DIR = "/etc/pulumi-hypervisor";

/** Returns the unit name of one object, e.g. `pulumi-hypervisor-bridge-br0.service`. */
export function unitName(kind: string, name: string): string {
  // Names are validated ([A-Za-z0-9_.-]); all of those are legal in unit names as they are.
  return `pulumi-hypervisor-${kind}-${name}.service`;
}

/** Returns the path of a unit file in UNIT_DIR. */
export function unitPath(unit: string): string {
  return `${UNIT_DIR}/${unit}`;
}

/** A unit file as ordered sections of `Key=value` lines (a key may repeat). */
export interface UnitSpec {
  readonly description: string;
  readonly unit?: ReadonlyArray<readonly [string, string]>;
  readonly service: ReadonlyArray<readonly [string, string]>;
  readonly wantedBy?: string;
}

/** Returns the text of a systemd unit file; values are the caller's (names, paths, numbers). */
export function renderUnit(spec: UnitSpec): string {
  const lines = [
    "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.",
    "[Unit]",
    `Description=${spec.description}`,
    ...(spec.unit ?? []).map(([k, v]) => `${k}=${v}`),
    "",
    "[Service]",
    ...spec.service.map(([k, v]) => `${k}=${v}`),
  ];
  if (spec.wantedBy !== undefined) lines.push("", "[Install]", `WantedBy=${spec.wantedBy}`);
  return `${lines.join("\n")}\n`;
}

/**
 * Returns a self-contained POSIX script that runs the steps in order and stops at the first
 * failure, naming it: what a oneshot unit runs at boot. Rendered from the same steps the provider
 * applies live (the create plan against an empty host), so live and persisted state agree.
 */
export function renderBootScript(title: string, steps: readonly Step[]): string {
  const lines = [
    "#!/bin/sh",
    `# ${title}: written by pulumi-hypervisor from the same plan it applies live.`,
    "# Edits are reported as drift and undone by `pulumi up`.",
    "set -u",
    'fail() { echo "pulumi-hypervisor: $1 failed (exit $2)" >&2; exit 1; }',
  ];
  lines.push(...stepScriptLines(steps, "fail"));
  return `${lines.join("\n")}\n`;
}
