import { scriptIn } from "../host/script";
import type { Step } from "../step";
import { stepScriptLines } from "../step-script";

/** How long a host waits for the provider's new login before it restores itself (netplan try: 120). */
export const DEFAULT_DEADMAN_SECONDS = 90;

/** Where each armed timer keeps its restore script, snapshot, lock and outcome. */
export const DEADMAN_DIR = "/run/pulumi-hypervisor/deadman";

/** Returns the name of the transient systemd unit of one timer (`.timer` and `.service`). */
export function deadmanUnit(id: string): string {
  return `pulumi-hypervisor-deadman-${id}`;
}

/**
 * Returns a POSIX script that undoes a change: every step runs even if one fails (a restore that
 * stops half-way helps nobody), each failure named on stderr.
 */
export function renderRestoreScript(title: string, steps: readonly Step[]): string {
  const lines = [
    `# ${title}: written by pulumi-hypervisor's dead-man timer.`,
    'failed() { echo "failed: $1" >&2; }',
    ...stepScriptLines(steps, "failed"),
  ];
  return `${lines.join("\n")}\n`;
}

/** What a guarded change needs: a timer id, how long the host waits, and how to undo it. */
export interface Guard {
  /** Names the timer: `[A-Za-z0-9_.-]`, e.g. `bridge-br0`. */
  readonly id: string;
  readonly seconds: number;
  /** Why the change is guarded, shown in the plan. */
  readonly reason: string;
  /** Undoes the live change (files are restored from the snapshot first). */
  readonly restore: readonly Step[];
  /** Files the change may write: snapshotted, and restored (or removed when absent) on rollback. */
  readonly files: readonly string[];
}

/** Returns the step that arms the timer (restore script and snapshot written first). */
export function armStep(g: Guard): Step {
  return {
    summary: `arm a dead-man timer: unless a new SSH login confirms the change within ${g.seconds}s, the host restores its previous network configuration by itself (${g.reason})`,
    script: scriptIn(__dirname, "deadman-arm.sh", [g.id, String(g.seconds), ...g.files]),
    stdin: renderRestoreScript(`undo the change of ${g.id}`, g.restore),
  };
}

/** Returns the step that confirms the change over a new SSH login and stops the timer. */
export function confirmStep(g: Guard): Step {
  return {
    summary: `log in again over a new SSH connection and stop the dead-man timer of ${g.id}`,
    script: scriptIn(__dirname, "deadman-end.sh", ["confirm", g.id]),
  };
}

/** Returns the step that stops the timer and restores the previous configuration now. */
export function restoreNowStep(id: string): Step {
  return {
    summary: `restore the configuration from before the change of ${id} now`,
    script: scriptIn(__dirname, "deadman-end.sh", ["restore", id]),
    okExitCodes: [0, 3],
  };
}

/** Returns the steps with `change` run under the timer: arm, the change, confirm. */
export function guarded(g: Guard, change: readonly Step[]): Step[] {
  return [armStep(g), ...change, confirmStep(g)];
}

/** Returns the timer's seconds when the step arms one. */
export function armedSeconds(step: Step): number | undefined {
  if (!("script" in step) || !step.script.name.endsWith("deadman/deadman-arm.sh")) return undefined;
  return Number(step.script.args[1]);
}

/** Returns whether the step is a timer's confirm (it must run over a new login). */
export function isConfirm(step: Step): boolean {
  return (
    "script" in step &&
    step.script.name.endsWith("deadman/deadman-end.sh") &&
    step.script.args[0] === "confirm"
  );
}
