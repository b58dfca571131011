import { createHash } from "node:crypto";
import { z } from "zod";
import type { ProbeOutput } from "../host/probe";
import { scriptIn } from "../host/script";
import type { ProbeUnits } from "../resource";
import { logWarn } from "../log";
import type { Step } from "../step";
import { unitPath } from "./systemd-unit";

/** The `persistence` input every resource takes. */
export const Persistence = z
  .enum(["auto", "none"])
  .default("auto")
  .describe(
    'Whether the object comes back after a host reboot. "auto": through the provider\'s own systemd units where PID 1 is systemd (elsewhere runtime only, with a warning); "none": runtime only.',
  );
export type Persistence = z.infer<typeof Persistence>;

/** The `persistedBy` output: which backend brings the object back after a reboot. */
export const PersistedBy = z
  .enum(["systemd", "ifupdown", "networkd", "networkmanager", "none"])
  .describe(
    'What brings the object back after a reboot: "systemd" (the provider\'s own unit), the host\'s network manager that owns an enslaved NIC ("ifupdown", "networkd", "networkmanager"), or "none".',
  );
export type PersistedBy = z.infer<typeof PersistedBy>;

/** A file the provider persists for an object (a unit file, a boot script, a config). */
export interface PersistedFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

/** What an object needs on disk to come back at boot: its unit and the files it reads. */
export interface PersistedForm {
  readonly unit: string;
  /** Every file the unit needs, the unit file itself included. */
  readonly files: readonly PersistedFile[];
  /** Start the unit when it is written (daemons the unit supervises); oneshot units only enable. */
  readonly start?: boolean;
  /** false: the unit is written but not started at boot (disabled where it was enabled). */
  readonly enable?: boolean;
}

/** The persisted layer of an object as the probe saw it. */
export interface PersistedState {
  /** PID 1 is systemd. */
  readonly systemd: boolean;
  readonly unit: string;
  /** `systemctl is-enabled` ("enabled", "disabled", "not-found", ...), "" without systemd. */
  readonly enabled: string;
  /** `systemctl is-active` ("active", "inactive", "failed", ...), "" without systemd. */
  readonly active: string;
  /** sha256 of each probed file, undefined when absent. */
  readonly files: Readonly<Record<string, string | undefined>>;
}

/** Returns the sha256 (hex) of a file's content, as `sha256sum` prints it. */
export function contentHash(content: string): string {
  return createHash("sha256").update(content, "utf8").digest("hex");
}

/**
 * Returns what a probe asks systemd about (unit-state.sh): the object's unit `how` its probe asks
 * (`active`: state only; `pid`: state and main pid) and for its enablement (persist_probe), and
 * systemd-networkd's state where the probe reads it too (`ask_units systemd-networkd.service`).
 */
export function probeUnits(unit: string, how: "active" | "pid", networkd = false): ProbeUnits {
  return how === "pid"
    ? { pid: [unit], enabled: [unit] }
    : { active: networkd ? ["systemd-networkd.service", unit] : [unit], enabled: [unit] };
}

/** Returns the persisted layer from a probe that ran `persist_probe` (persist-probe.sh). */
export function parsePersistProbe(probe: ProbeOutput): PersistedState {
  const systemd = probe.need("systemd").trim() === "yes";
  const unitSection = probe.all("unit")[0];
  const fields = new Map<string, string>();
  for (const line of (unitSection?.body ?? "").split("\n")) {
    const sp = line.indexOf(" ");
    if (sp > 0) fields.set(line.slice(0, sp), line.slice(sp + 1).trim());
  }
  const files: Record<string, string | undefined> = {};
  for (const s of probe.all("file")) {
    const h = s.body.trim();
    files[s.arg] = h === "absent" ? undefined : h;
  }
  return {
    systemd,
    unit: unitSection?.arg ?? "",
    enabled: fields.get("enabled") ?? "",
    active: fields.get("active") ?? "",
    files,
  };
}

/** Returns whether an object with this input persists on a host in this state. */
export function persists(persistence: Persistence, state: PersistedState): boolean {
  return persistence === "auto" && state.systemd;
}

const warned = new Set<string>();

/** Logs once per host that "auto" persistence means runtime only there (no systemd). */
export function warnNoSystemd(hostLabel: string, state: PersistedState): void {
  if (state.systemd || warned.has(hostLabel)) return;
  warned.add(hostLabel);
  logWarn(
    `${hostLabel}: PID 1 is not systemd, so objects on this host are runtime only and do not come back after a reboot`,
  );
}

/** Returns the files whose content on the host differs from what the provider would write. */
export function driftedFiles(want: PersistedForm, state: PersistedState): PersistedFile[] {
  return want.files.filter((f) => state.files[f.path] !== contentHash(f.content));
}

/**
 * The step that makes systemd read the unit files written before it (persist/systemd-reload.sh):
 * `systemctl daemon-reload`, shared by the operations on a host that reach it while another one's
 * runs. A reload re-reads every unit and runs the generators, about 160 ms of a small booted
 * host's CPU, one at a time.
 */
export const reloadUnitsStep: Step = {
  summary: "reload systemd's units",
  script: scriptIn(__dirname, "systemd-reload.sh", []),
};

/**
 * Returns the steps that make the persisted layer match `want` (undefined: remove it): rewrite
 * changed files, enable (or disable) the unit, one reload of systemd's units where the unit file
 * or its links changed, then start it. `systemctl enable` and `disable` would reload on their own
 * once the links are made: `--no-reload` leaves that to the one reload step.
 */
export function planPersistence(want: PersistedForm | undefined, state: PersistedState): Step[] {
  if (!state.systemd) return [];
  if (want === undefined) return planUnpersist(state);
  const steps: Step[] = [];
  const changed = driftedFiles(want, state);
  for (const f of changed) {
    steps.push({
      summary: `persist ${f.path}`,
      writeFile: { path: f.path, content: f.content, mode: f.mode },
    });
  }
  let reload = changed.some((f) => f.path === unitPath(want.unit));
  if (want.enable === false && state.enabled === "enabled") {
    steps.push({
      summary: `disable ${want.unit} so it does not run at boot`,
      argv: ["systemctl", "disable", "--no-reload", "--quiet", "--", want.unit],
    });
    reload = true;
  } else if (want.enable !== false && state.enabled !== "enabled") {
    steps.push({
      summary: `enable ${want.unit} so it runs at boot`,
      argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", want.unit],
    });
    reload = true;
  }
  if (reload) steps.push(reloadUnitsStep);
  if (want.start === true && state.active !== "active") {
    steps.push({ summary: `start ${want.unit}`, argv: ["systemctl", "start", "--", want.unit] });
  }
  return steps;
}

/**
 * Returns the steps that disable the unit and remove every persisted file that is present, with
 * one reload of systemd's units after (the stop of `disable --now` needs none: the unit is loaded).
 */
export function planUnpersist(state: PersistedState): Step[] {
  const present = Object.entries(state.files)
    .filter(([, h]) => h !== undefined)
    .map(([p]) => p);
  const known = state.enabled !== "" && state.enabled !== "not-found";
  if (!known && present.length === 0) return [];
  const steps: Step[] = [];
  if (known) {
    steps.push({
      summary: `disable and stop ${state.unit}`,
      argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", state.unit],
    });
  }
  if (present.length > 0) {
    steps.push({ summary: `remove ${present.join(", ")}`, argv: ["rm", "-f", "--", ...present] });
  }
  steps.push(reloadUnitsStep);
  return steps;
}

/** How refresh describes a persisted file whose content is not what the provider writes. */
export const NOT_OURS =
  "differs from what the provider writes (edited by hand, or written by another version)";

/** Returns how refresh describes the persisted layer's drift, or undefined when it matches. */
export function describePersistDrift(
  want: PersistedForm,
  state: PersistedState,
): string | undefined {
  const problems: string[] = [];
  for (const f of driftedFiles(want, state)) {
    // A file that is not what this version writes: edited on the host, or written by another
    // version of the provider whose scripts or units differ (an upgrade shows it once, and `up`
    // rewrites it), which the hash alone cannot tell apart.
    problems.push(
      state.files[f.path] === undefined ? `${f.path} is missing` : `${f.path} ${NOT_OURS}`,
    );
  }
  if (want.enable === false) {
    if (state.enabled === "enabled") problems.push(`${want.unit} is enabled`);
  } else if (state.enabled !== "enabled") {
    problems.push(`${want.unit} is ${state.enabled || "unknown"}`);
  }
  if (state.active === "failed") problems.push(`${want.unit} failed`);
  return problems.length > 0 ? problems.join("; ") : undefined;
}
