import type { PersistedForm, PersistedState } from "../../persist/persistence";
import { persists } from "../../persist/persistence";
import { renderBootScript, renderUnit, unitName, unitPath } from "../../persist/systemd-unit";
import { scriptIn } from "../../host/script";
import type { Step } from "../../step";
import { guestPaths, QEMU_LOG_ROOT, type GuestStart } from "./argv";
import type { QemuGuestInputs, QemuGuestState } from "./schema";

/** Returns the unit name of a guest: `pulumi-hypervisor-qemu-<name>.service`. */
export function guestUnitName(name: string): string {
  return unitName("qemu", name);
}

/**
 * Returns the steps that start the guest: its run (and log) directory, then QEMU daemonized; with
 * accel "auto", qemu-start.sh chooses KVM or TCG on the host and falls back to TCG.
 */
export function startSteps(g: QemuGuestInputs, start: GuestStart): Step[] {
  const p = guestPaths(g.name);
  const size = `${g.memoryMiB} MiB, ${g.cpus} cpu`;
  const run: Step =
    "argv" in start
      ? {
          summary: `start guest ${g.name} (${start.argv[start.argv.indexOf("-accel") + 1] ?? ""}, ${size})`,
          argv: start.argv,
        }
      : {
          summary: `start guest ${g.name} (KVM if it works, else TCG; ${size})`,
          script: scriptIn(__dirname, "qemu-start.sh", [
            g.machine,
            p.pidFile,
            p.accelNote,
            String(start.kvm.length),
            ...start.kvm,
            ...start.tcg,
          ]),
        };
  return [
    {
      summary: `create ${p.runDir}${g.serialLog ? ` and ${QEMU_LOG_ROOT}` : ""}`,
      argv: ["mkdir", "-p", "--", p.runDir, ...(g.serialLog ? [QEMU_LOG_ROOT] : [])],
    },
    run,
  ];
}

/** Returns the units a guest's unit is ordered after: its taps', its bridges' and their dnsmasqs'. */
export function guestDependencies(g: QemuGuestInputs, state: QemuGuestState): string[] {
  const taps = g.nics.flatMap((n) => (n.tap !== undefined ? [n.tap] : []));
  const bridges = [
    ...g.nics.flatMap((n) => (n.bridge !== undefined ? [n.bridge] : [])),
    ...taps.flatMap((t) => {
      const master = state.links[t]?.master;
      return master !== undefined ? [master] : [];
    }),
  ];
  const served = [...taps, ...bridges].flatMap((i) => state.dnsmasqByInterface[i] ?? []);
  const units = [
    ...taps.map((t) => unitName("tap", t)),
    ...bridges.map((b) => unitName("bridge", b)),
    ...served.map((d) => unitName("dnsmasq", d)),
  ];
  return [...new Set(units)];
}

/**
 * Returns the guest's service unit: the start steps as a boot script (QEMU daemonized with its pid
 * file, so Type=forking), restarted on failure (a clean power-off exits 0 and stays off), and on
 * stop an ACPI power-down with the guest's grace, then `quit`, then signals (qemu-stop.sh).
 */
export function renderGuestUnit(g: QemuGuestInputs, after: readonly string[]): string {
  const p = guestPaths(g.name);
  const order: Array<readonly [string, string]> =
    after.length > 0
      ? [
          ["Wants", after.join(" ")],
          ["After", after.join(" ")],
        ]
      : [];
  return renderUnit({
    description: `pulumi-hypervisor QEMU guest ${g.name}`,
    unit: order,
    service: [
      ["Type", "forking"],
      ["PIDFile", p.pidFile],
      ["ExecStart", `/bin/sh ${p.startScript}`],
      ["ExecStop", `/bin/sh ${p.stopScript}`],
      // qemu-stop.sh: the grace, up to 10 s for each of two QMP exchanges, 5 s each for quit,
      // SIGTERM and SIGKILL (grace + 35 s); systemd's own SIGTERM/SIGKILL only after that.
      ["TimeoutStopSec", String(g.shutdownTimeoutSeconds + 40)],
      ["Restart", "on-failure"],
      ["RestartSec", "1"],
    ],
    wantedBy: "multi-user.target",
  });
}

/** Returns the boot script that starts the guest: taps checked, then the live start steps. */
export function renderStartScript(g: QemuGuestInputs, start: GuestStart): string {
  const taps = g.nics.flatMap((n) => (n.tap !== undefined ? [n.tap] : []));
  const check: Step[] =
    taps.length > 0
      ? [
          {
            summary: `check the taps of guest ${g.name} (${taps.join(", ")})`,
            script: scriptIn(__dirname, "qemu-check-taps.sh", [g.name, ...taps]),
          },
        ]
      : [];
  return renderBootScript(`start guest ${g.name}`, [...check, ...startSteps(g, start)]);
}

/** Returns what a guest persists: its unit, start and stop scripts; enabled unless autostart is false. */
export function guestPersistedForm(
  g: QemuGuestInputs,
  state: QemuGuestState,
  start: GuestStart,
  stop: Step,
): PersistedForm {
  const p = guestPaths(g.name);
  const unit = guestUnitName(g.name);
  // A guest that is not to run keeps the start script it has: without a start the accelerator is
  // not probed, and the script must not flip between probes.
  const keepStart = !g.running && state.persist.files[p.startScript] !== undefined;
  return {
    unit,
    files: [
      {
        path: unitPath(unit),
        content: renderGuestUnit(g, guestDependencies(g, state)),
        mode: 0o644,
      },
      ...(keepStart
        ? []
        : [{ path: p.startScript, content: renderStartScript(g, start), mode: 0o700 }]),
      {
        path: p.stopScript,
        content: renderBootScript(`stop guest ${g.name}`, [stop]),
        mode: 0o700,
      },
    ],
    start: g.running,
    enable: g.running && g.autostart !== false,
  };
}

/** Returns whether the guest persists on this host (systemd as PID 1 and persistence "auto"). */
export function guestPersists(g: QemuGuestInputs, persist: PersistedState): boolean {
  return persists(g.persistence, persist);
}

/** Returns whether systemd runs the guest's QEMU under its unit. */
export function guestSupervised(state: QemuGuestState): boolean {
  const proc = state.process;
  return proc !== undefined && state.persist.active === "active" && state.mainPid === proc.pid;
}
