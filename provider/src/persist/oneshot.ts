import { z } from "zod";
import type { Step } from "../step";
import {
  driftedFiles,
  describePersistDrift,
  planPersistence,
  type PersistedBy,
  type PersistedForm,
  type PersistedState,
  type Persistence,
  persists,
} from "./persistence";
import { PERSIST_DIR, renderBootScript, renderUnit, unitName, unitPath } from "./systemd-unit";

/** The `persistedDrift` output: how the persisted layer differs from what the provider writes. */
export const PersistedDrift = z
  .string()
  .optional()
  .describe(
    "How the persisted layer differs from what the provider would write (absent when it matches): a file missing or not as it writes it (edited by hand, or written by another version of the provider), a unit disabled or failed, or live state that differs while the files match (the unit restores it at the next boot). `pulumi up` repairs both.",
  );

/** Returns the path of the boot script of one object, e.g. /etc/pulumi-hypervisor/bridge/br0.sh. */
export function bootScriptPath(kind: string, name: string): string {
  return `${PERSIST_DIR}/${kind}/${name}.sh`;
}

/** Returns the `persist_probe` arguments of an object: its unit and the files it may have. */
export function persistProbeArgs(
  kind: string,
  name: string,
  extra: readonly string[] = [],
): string[] {
  const unit = unitName(kind, name);
  return [unit, unitPath(unit), bootScriptPath(kind, name), ...extra];
}

/** A oneshot unit that recreates an object at boot by running its create plan. */
export interface OneshotSpec {
  /** "bridge", "tap", "nat": the unit's and the boot script's folder name. */
  readonly kind: string;
  readonly name: string;
  /** "bridge br0": the unit's description after "pulumi-hypervisor ". */
  readonly title: string;
  /** The create plan against an empty host: what the unit runs at boot. */
  readonly steps: readonly Step[];
  /** Units to order after (and pull in when `wants`); network-pre.target by default. */
  readonly after: readonly string[];
  readonly wants?: readonly string[];
  /** Units to order before; network.target for what the network comes up with. */
  readonly before: readonly string[];
  /** Files beyond the unit and its boot script (e.g. a bridge's recorded MAC), already known. */
  readonly extraFiles?: PersistedForm["files"];
  /**
   * A path whose existence means the object is already there (`/sys/class/net/<link>`): the unit
   * is then skipped, not failed, when another unit pulls it in after the live create (a dnsmasq
   * or QEMU unit `Wants=` its bridge's and taps' units).
   */
  readonly unlessExists?: string;
}

/**
 * Returns the persisted form of a oneshot object: a unit with `RemainAfterExit=yes` whose
 * ExecStart runs the boot script rendered from the create plan, so boot and live agree.
 */
export function renderOneshotForm(spec: OneshotSpec): PersistedForm {
  const unit = unitName(spec.kind, spec.name);
  const script = bootScriptPath(spec.kind, spec.name);
  const deps: Array<readonly [string, string]> = [];
  if (spec.wants !== undefined && spec.wants.length > 0) deps.push(["Wants", spec.wants.join(" ")]);
  if (spec.after.length > 0) deps.push(["After", spec.after.join(" ")]);
  if (spec.before.length > 0) deps.push(["Before", spec.before.join(" ")]);
  if (spec.unlessExists !== undefined) deps.push(["ConditionPathExists", `!${spec.unlessExists}`]);
  const title = `pulumi-hypervisor ${spec.title}`;
  return {
    unit,
    files: [
      {
        path: unitPath(unit),
        content: renderUnit({
          description: title,
          unit: deps,
          service: [
            ["Type", "oneshot"],
            ["RemainAfterExit", "yes"],
            ["ExecStart", `/bin/sh ${script}`],
          ],
          wantedBy: "multi-user.target",
        }),
        mode: 0o644,
      },
      // Nothing secret goes in: interface names, addresses and rules, as `ip` and `nft` show them.
      { path: script, content: renderBootScript(title, spec.steps), mode: 0o644 },
      ...(spec.extraFiles ?? []),
    ],
  };
}

/**
 * Returns the steps of a whole plan: the live steps, then the persisted layer brought to `want`
 * (undefined: removed); on delete the unit goes first, so nothing comes back at the next boot.
 */
export function withPersistence(
  deleting: boolean,
  live: readonly Step[],
  want: PersistedForm | undefined,
  layer: PersistedState,
): Step[] {
  if (deleting) return [...planPersistence(undefined, layer), ...live];
  return [...live, ...planPersistence(want, layer)];
}

/** Returns whether the persisted layer is as `want` says (undefined: nothing of ours persisted). */
export function persistedInSync(want: PersistedForm | undefined, layer: PersistedState): boolean {
  return planPersistence(want, layer).length === 0;
}

/**
 * Returns the `persistence` input as observed: the desired value while the persisted layer
 * matches it (or the host has no systemd), the other value when it does not, so refresh shows
 * the drift and the next `up` rewrites what drifted.
 */
export function observedPersistence(
  persistence: Persistence,
  want: PersistedForm | undefined,
  layer: PersistedState,
): Persistence {
  if (!layer.systemd || persistedInSync(want, layer)) return persistence;
  return persistence === "auto" ? "none" : "auto";
}

/** Returns the persistedBy and persistedDrift outputs of an object. */
export function persistenceOutputs(
  want: PersistedForm | undefined,
  layer: PersistedState,
  liveInSync: boolean,
): { persistedBy: PersistedBy; persistedDrift: string | undefined } {
  const persistedBy: PersistedBy = want !== undefined && layer.systemd ? "systemd" : "none";
  if (!layer.systemd) return { persistedBy, persistedDrift: undefined };
  if (want === undefined) {
    const left = Object.entries(layer.files).filter(([, h]) => h !== undefined);
    return {
      persistedBy,
      persistedDrift:
        left.length > 0
          ? `persisted files left behind: ${left.map(([p]) => p).join(", ")}`
          : undefined,
    };
  }
  const files = describePersistDrift(want, layer);
  if (files !== undefined) return { persistedBy, persistedDrift: files };
  if (!liveInSync && driftedFiles(want, layer).length === 0) {
    return {
      persistedBy,
      persistedDrift: `live state differs from the persisted form; its files match, so ${want.unit} restores it at the next boot`,
    };
  }
  return { persistedBy, persistedDrift: undefined };
}

/** What a oneshot resource's state carries for its persisted layer. */
export interface PersistingState<I> {
  readonly persisted: PersistedState;
  readonly inputs?: I | undefined;
}

/** The persisted-layer parts of a oneshot resource module, from its form and live planners. */
export interface OneshotPersistence<I, S> {
  /** Returns the persisted form the inputs want on this host (undefined: none of ours). */
  readonly wantedForm: (inputs: I, state: S) => PersistedForm | undefined;
  /** Returns the persistedBy/persistedDrift outputs (undefined before inputs are known). */
  readonly outputs: (state: S) => {
    persistedBy: PersistedBy | undefined;
    persistedDrift: string | undefined;
  };
  /** Returns the `persistence` input as observed. */
  readonly observed: (desired: I, state: S) => Persistence;
}

/**
 * Returns the persisted-layer parts of a resource module: `wanted` gives the form the inputs want
 * (undefined: none), `live` the live plan whose emptiness means the live state is in sync.
 */
export function oneshotPersistence<
  I extends { readonly persistence: Persistence },
  S extends PersistingState<I>,
>(
  wanted: (inputs: I, state: S) => PersistedForm | undefined,
  live: (inputs: I, state: S) => readonly Step[],
): OneshotPersistence<I, S> {
  const liveInSync = (inputs: I, state: S): boolean => {
    try {
      return live(inputs, state).length === 0;
    } catch {
      return false;
    }
  };
  return {
    wantedForm: wanted,
    outputs: (state) =>
      state.inputs !== undefined
        ? persistenceOutputs(
            wanted(state.inputs, state),
            state.persisted,
            liveInSync(state.inputs, state),
          )
        : { persistedBy: undefined, persistedDrift: undefined },
    observed: (desired, state) =>
      observedPersistence(desired.persistence, wanted(desired, state), state.persisted),
  };
}

/**
 * Returns `form` guarded for the `persistence` input: undefined when the object does not persist
 * on this host or its form cannot be planned (the plan reports that error).
 */
export function formWhenPersisted<
  I extends { readonly persistence: Persistence },
  S extends PersistingState<I>,
>(
  form: (inputs: I, state: S) => PersistedForm,
): (inputs: I, state: S) => PersistedForm | undefined {
  return (inputs, state) => {
    if (!persists(inputs.persistence, state.persisted)) return undefined;
    try {
      return form(inputs, state);
    } catch {
      return undefined;
    }
  };
}
