import type { ResourceModule } from "../../resource";
import { accelInArgv, guestPaths } from "./argv";
import { observeQemuGuest, parseQemuGuestResult, probeQemuGuest } from "./observe";
import { describePersistDrift } from "../../persist/persistence";
import { planQemuGuest, wantedGuestForm } from "./plan";
import { guestPersists } from "./unit";
import { QemuGuestInputs, QemuGuestOutputs, type QemuGuestState } from "./schema";

// Everything on QEMU's command line replaces the guest (QEMU cannot change it live); only
// `running`, `deleteDisks`, `shutdownTimeoutSeconds`, `autostart` and `persistence` are applied in
// place.
const LIVE = ["running", "deleteDisks", "shutdownTimeoutSeconds", "autostart", "persistence"];

/** Returns the guest's status: QMP's run state, or "stopped" when no QEMU process runs for it. */
export function guestStatus(state: QemuGuestState): string {
  if (!state.process) return "stopped";
  return state.process.status ?? "unresponsive";
}

function persistedOutputs(state: QemuGuestState): {
  persistedBy: "systemd" | "none";
  persistedDrift: string | undefined;
} {
  if (!guestPersists(state.inputs, state.persist)) {
    return { persistedBy: "none", persistedDrift: undefined };
  }
  try {
    const form = wantedGuestForm(state.inputs, state);
    const drift = form === undefined ? undefined : describePersistDrift(form, state.persist);
    return { persistedBy: "systemd", persistedDrift: drift };
  } catch {
    // The accelerator cannot be chosen (KVM asked for, not usable): the plan says so.
    return { persistedBy: "systemd", persistedDrift: undefined };
  }
}

/** The QemuGuest resource. */
export const qemuGuestModule: ResourceModule<
  QemuGuestInputs,
  QemuGuestState,
  typeof QemuGuestOutputs
> = {
  type: "QemuGuest",
  description: "A QEMU guest on a hypervisor host, run daemonized and managed through QMP.",
  noun: "qemu guest",
  inputs: QemuGuestInputs,
  inputKeys: Object.keys(QemuGuestInputs.shape),
  identity: Object.keys(QemuGuestInputs.shape).filter((k) => !LIVE.includes(k)),
  id: (inputs) => inputs.name,
  probe: probeQemuGuest,
  parse: parseQemuGuestResult,
  observe: (host, inputs, ctx) => observeQemuGuest(host, inputs, ctx),
  exists: (state) => state.config !== undefined || state.process !== undefined,
  outputSchema: QemuGuestOutputs,
  plan: planQemuGuest,
  outputs: (state) => {
    const p = guestPaths(state.name);
    const proc = state.process;
    return {
      pid: proc?.pid,
      qmpSocket: p.qmpSocket,
      status: guestStatus(state),
      accelUsed: proc ? (proc.accel ?? accelInArgv(proc.argv)) : undefined,
      serialLogPath: state.inputs.serialLog ? p.serialLog : undefined,
      ...persistedOutputs(state),
    };
  },
  // Only whether the guest runs is observed; everything else is on QEMU's command line, which
  // the plan compares as a whole (a difference restarts the guest).
  // A drifted persisted layer (unit or scripts edited, disabled, failed) would not bring the guest
  // back as declared: refresh shows it as drift of `persistence`, so `up` repairs it.
  observedInputs: (state, desired) => ({
    running: state.process?.status === "running",
    persistence:
      persistedOutputs(state).persistedDrift !== undefined ? "none" : desired.persistence,
  }),
};
