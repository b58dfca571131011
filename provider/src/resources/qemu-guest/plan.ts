import { BRIDGE_CONF } from "../../bridge-helper-acl";
import { PlanError } from "../../errors";
import { planPersistence, type PersistedForm } from "../../persist/persistence";
import { scriptIn } from "../../host/script";
import type { Step } from "../../step";
import {
  accelInArgv,
  buildQemuArgv,
  diskMarkerPath,
  guestPaths,
  QEMU_BINARY,
  type GuestStart,
  renderGuestConfig,
} from "./argv";
import { qmpCommand, qmpStep } from "./qmp";
import type { QemuGuestInputs, QemuGuestState } from "./schema";
import {
  guestPersistedForm,
  guestPersists,
  guestSupervised,
  guestUnitName,
  startSteps,
} from "./unit";

const GIB = 1024 ** 3;

/** Returns the step that shuts the guest down: powerdown, `quit` after the timeout, then signals. */
export function stopStep(g: QemuGuestInputs, why: string): Step {
  const p = guestPaths(g.name);
  return {
    summary: `${why}: ACPI powerdown, quit after ${g.shutdownTimeoutSeconds}s, then kill`,
    script: scriptIn(__dirname, "qemu-stop.sh", [
      p.pidFile,
      p.qmpSocket,
      String(g.shutdownTimeoutSeconds),
    ]),
  };
}

/** Returns the steps that take the host from `actual` to `desired` (undefined: delete). */
export function planQemuGuest(
  desired: QemuGuestInputs | undefined,
  actual: QemuGuestState,
): Step[] {
  return desired === undefined ? planDelete(actual) : planConverge(desired, actual);
}

function planDelete(actual: QemuGuestState): Step[] {
  const g = actual.inputs;
  const p = guestPaths(actual.name);
  // `systemctl disable --now` shuts down a guest its unit runs (ExecStop: the same graceful stop).
  const steps: Step[] = planPersistence(undefined, actual.persist);
  if (actual.process && !guestSupervised(actual))
    steps.push(stopStep(g, `stop guest ${g.name} (pid ${actual.process.pid})`));
  if (actual.present.runDir || actual.process) {
    steps.push({ summary: `remove ${p.runDir}`, argv: ["rm", "-rf", "--", p.runDir] });
  }
  if (actual.present.configDir || actual.config !== undefined) {
    steps.push({ summary: `remove ${p.configDir}`, argv: ["rm", "-rf", "--", p.configDir] });
  }
  if (actual.present.serialLog) {
    steps.push({
      summary: `remove the serial log ${p.serialLog}`,
      argv: ["rm", "-f", "--", p.serialLog],
    });
  }
  if (g.deleteDisks) {
    // Only images the provider created (their marker matches); the script checks that again.
    for (const d of g.disks) {
      if (actual.disks[d.path]?.created === true) {
        steps.push({
          summary: `remove disk image ${d.path} (deleteDisks; the provider created it)`,
          script: scriptIn(__dirname, "qemu-delete-disk.sh", [d.path, diskMarkerPath(d.path)]),
        });
      }
    }
  }
  return steps;
}

function refuseMissingPrograms(g: QemuGuestInputs, actual: QemuGuestState): void {
  if (!actual.programs.qemu) {
    throw new PlanError(
      `${QEMU_BINARY} is not installed on the host (Debian package qemu-system-x86)`,
    );
  }
  if (!actual.programs.socat) {
    throw new PlanError(
      "socat is not installed on the host; the provider talks to QEMU's QMP monitor through it (Debian package socat)",
    );
  }
  if (!actual.programs.qemuImg && g.disks.length > 0) {
    throw new PlanError("qemu-img is not installed on the host (Debian package qemu-utils)");
  }
}

const SECTOR = 512;

/**
 * Refuses a disk path that holds something other than an image of the declared format, before
 * anything on the host is touched. qcow2 is proven by its magic (qemu-img's probe). raw has no
 * signature: a raw file is used only when it is whole 512-byte sectors, and grown or deleted only
 * when the provider created it (its marker). A block device is a raw disk used as it is: never
 * created, grown or deleted.
 */
function refuseDisks(g: QemuGuestInputs, actual: QemuGuestState): void {
  g.disks.forEach((d, i) => {
    const img = actual.disks[d.path];
    if (img === undefined) return;
    const where = `disks[${i}]: ${d.path}`;
    const refuse = (why: string, fix: string): never => {
      throw new PlanError(`${where} ${why}; refusing to use, grow or delete it (${fix})`);
    };
    if (img.kind === "symlink") {
      refuse(
        `is a symlink to ${img.target ?? "?"}, and the provider does not follow disk symlinks`,
        "give the image's own path",
      );
    }
    if (img.kind === "block-device") {
      if (d.format !== "raw") {
        refuse(`is a block device, which is a raw disk`, `declare format "raw"`);
      }
      return;
    }
    if (img.kind !== "file") {
      refuse(
        `is a ${img.kind}, not an image file or block device`,
        "the provider uses image files and block devices only",
      );
    }
    if (img.format !== d.format) {
      const found =
        img.format === "raw" ? "raw: it has no image format signature" : `${img.format ?? "?"}`;
      refuse(
        `is not a ${d.format} image (qemu-img reads it as ${found})`,
        "fix the format or the path",
      );
    }
    if (d.format === "raw" && !img.created && img.bytes % SECTOR !== 0) {
      refuse(
        `is not a raw disk image: its size, ${img.bytes} bytes, is not a whole number of 512-byte sectors`,
        "fix the path",
      );
    }
  });
}

// Checked when the guest starts or its config (which claims its MACs) is written.
function refuseTakenMacs(g: QemuGuestInputs, actual: QemuGuestState): void {
  g.nics.forEach((n, i) => {
    const other = actual.otherMacs.find((o) => o.mac === n.mac);
    if (other) {
      throw new PlanError(
        `nics[${i}].mac: ${n.mac} is already used by ${other.owner} on this host; give each guest its own MAC`,
      );
    }
  });
}

// What QEMU needs at start-up; a running or stopped guest does not depend on it.
function refuseStartBlockers(g: QemuGuestInputs, actual: QemuGuestState): void {
  if (g.runAs !== undefined && actual.runAsExists === false) {
    throw new PlanError(`runAs: user ${JSON.stringify(g.runAs)} does not exist on the host`);
  }
  const fileInputs: [string, string | undefined][] = [
    ["kernel", g.kernel],
    ["initrd", g.initrd],
    ["cdrom", g.cdrom],
  ];
  for (const [prop, path] of fileInputs) {
    if (path !== undefined && actual.missingFiles.includes(path)) {
      throw new PlanError(`${prop}: ${path} does not exist on the host (or is not readable)`);
    }
  }
  g.nics.forEach((n, i) => {
    if (n.tap !== undefined) {
      const link = actual.links[n.tap];
      if (link === undefined) {
        throw new PlanError(
          `nics[${i}].tap: ${n.tap} does not exist on the host; create the tap first (TapDevice)`,
          { missingLink: n.tap },
        );
      }
      if (link.kind !== "tun" || link.tunType !== "tap") {
        throw new PlanError(
          `nics[${i}].tap: ${n.tap} is not a tap device (kind ${link.tunType ?? link.kind ?? "none"})`,
        );
      }
    }
    if (n.bridge !== undefined) refuseBridge(n.bridge, i, actual);
  });
}

function refuseBridge(bridge: string, i: number, actual: QemuGuestState): void {
  const where = `nics[${i}].bridge`;
  const link = actual.links[bridge];
  if (link === undefined) {
    throw new PlanError(`${where}: bridge ${bridge} does not exist on the host`, {
      missingLink: bridge,
    });
  }
  if (link.kind !== "bridge")
    throw new PlanError(`${where}: ${bridge} is not a bridge (kind ${link.kind ?? "none"})`);
  const acl = bridgeAcl(actual.bridgeConf, bridge);
  if (acl !== "allowed") {
    const why =
      acl === "no-file"
        ? `${BRIDGE_CONF} does not exist, so qemu-bridge-helper refuses every bridge`
        : acl === "denied"
          ? `${BRIDGE_CONF} denies ${bridge} (deny wins over allow)`
          : `${BRIDGE_CONF} does not allow ${bridge}`;
    throw new PlanError(
      `${where}: ${why}; add "allow ${bridge}" (Bridge allowQemuBridgeHelper: true)`,
    );
  }
  const helper = actual.bridgeHelper;
  if (helper === undefined) {
    throw new PlanError(
      `${where}: qemu-bridge-helper is not installed on the host (Debian package qemu-system-common)`,
    );
  }
  if (actual.uid !== 0 && !helper.setuidRoot) {
    throw new PlanError(
      `${where}: ${helper.path} is not setuid root and QEMU would run as uid ${actual.uid}, so the helper cannot add a tap to ${bridge}; ` +
        `run "chmod u+s ${helper.path}" on the host or connect as root (or with sudo)`,
    );
  }
}

/** Returns whether qemu-bridge-helper's ACL lets a bridge through (deny rules win over allow rules). */
export function bridgeAcl(
  lines: string[] | undefined,
  bridge: string,
): "allowed" | "denied" | "not-allowed" | "no-file" {
  if (lines === undefined) return "no-file";
  let allowed = false;
  let denied = false;
  for (const raw of lines) {
    const m = /^\s*(allow|deny)[ \t]+(\S+)\s*$/.exec(raw);
    if (!m) continue;
    const hit = m[2] === "all" || m[2] === bridge;
    if (hit && m[1] === "allow") allowed = true;
    if (hit && m[1] === "deny") denied = true;
  }
  return denied ? "denied" : allowed ? "allowed" : "not-allowed";
}

// The accelerator of a command line to compare a running guest with: "auto" is whichever it runs.
function chooseAccel(g: QemuGuestInputs, actual: QemuGuestState): "kvm" | "tcg" {
  if (g.accel === "tcg") return "tcg";
  const kvm = actual.kvm;
  if (g.accel === "kvm") {
    if (kvm !== undefined && !kvm.usable) {
      throw new PlanError(
        `accel: kvm was asked for but KVM does not work on this host (${kvm.reason}); use accel "auto" or "tcg"`,
      );
    }
    return "kvm";
  }
  return (actual.process && accelInArgv(actual.process.argv)) ?? "tcg";
}

/** Returns how the guest starts: accel "auto" decides between KVM and TCG on the host, at the start. */
export function guestStart(g: QemuGuestInputs, actual: QemuGuestState): GuestStart {
  const bridgeHelper = actual.bridgeHelper?.path;
  if (g.accel === "auto") {
    return {
      kvm: buildQemuArgv(g, { accel: "kvm", bridgeHelper }),
      tcg: buildQemuArgv(g, { accel: "tcg", bridgeHelper }),
    };
  }
  return { argv: buildQemuArgv(g, { accel: chooseAccel(g, actual), bridgeHelper }) };
}

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Returns the persisted form of the guest on this host, or undefined when it is runtime only. */
export function wantedGuestForm(
  g: QemuGuestInputs,
  actual: QemuGuestState,
  start?: GuestStart,
): PersistedForm | undefined {
  if (!guestPersists(g, actual.persist)) return undefined;
  const want = start ?? guestStart(g, actual);
  return guestPersistedForm(g, actual, want, stopStep(g, `stop guest ${g.name}`));
}

// An explicit autostart needs a unit to enable; unset means "wherever the guest persists".
function refuseAutostart(g: QemuGuestInputs, actual: QemuGuestState): void {
  if (g.autostart !== true || guestPersists(g, actual.persist)) return;
  const why =
    g.persistence === "none"
      ? 'persistence is "none", so the guest has no unit to start at boot'
      : "PID 1 on this host is not systemd, so the guest has no unit to start at boot";
  throw new PlanError(
    `autostart: true cannot be honoured: ${why}; leave autostart unset or set it to false`,
  );
}

function planConverge(g: QemuGuestInputs, actual: QemuGuestState): Step[] {
  refuseAutostart(g, actual);
  const p = guestPaths(g.name);
  const persist = guestPersists(g, actual.persist);
  const underUnit = guestSupervised(actual);
  const unit = guestUnitName(g.name);
  const steps: Step[] = [];
  // Runtime only: a unit left from "auto" goes first, and `disable --now` stops the guest it runs.
  const unpersist = persist ? [] : planPersistence(undefined, actual.persist);
  steps.push(...unpersist);
  const proc = unpersist.length > 0 && underUnit ? undefined : actual.process;
  const running = proc !== undefined;

  // What happens to the process, decided first: checks that only matter for a start run only then.
  let action: "none" | "start" | "restart" | "stop" | "cont" | "wakeup" = "none";
  let reason = "";
  let start: GuestStart | undefined;
  const runningArgv = (): string[] =>
    buildQemuArgv(g, { accel: chooseAccel(g, actual), bridgeHelper: actual.bridgeHelper?.path });
  if (!g.running) {
    if (running) action = "stop";
  } else if (!running) {
    action = "start";
  } else {
    if (!sameArgv(proc.argv, runningArgv())) {
      action = "restart";
      reason = "its command line differs from the inputs";
    } else if (persist && !underUnit) {
      action = "restart";
      reason = `to run it under its systemd unit ${unit}`;
    } else if (proc.status === "paused") {
      action = "cont";
    } else if (proc.status === "suspended") {
      action = "wakeup";
    } else if (proc.status === undefined) {
      throw new PlanError(
        `QEMU (pid ${proc.pid}) does not answer on its QMP socket ${p.qmpSocket}`,
      );
    } else if (proc.status !== "running") {
      action = "restart";
      reason = `its status is ${proc.status}`;
    }
  }
  const starting = action === "start" || action === "restart";
  const config = renderGuestConfig(g);
  refuseMissingPrograms(g, actual);
  refuseDisks(g, actual);
  if (starting || actual.config !== config) refuseTakenMacs(g, actual);
  if (starting) {
    refuseStartBlockers(g, actual);
    start = guestStart(g, actual);
  }
  const form = persist ? wantedGuestForm(g, actual, start) : undefined;

  if (actual.config !== config) {
    steps.push({
      summary: `write ${p.configFile}`,
      writeFile: { path: p.configFile, content: config, mode: 0o600 },
    });
  }
  if (action === "stop" || action === "restart") {
    const why =
      action === "stop" ? `stop guest ${g.name}` : `stop guest ${g.name} to restart it (${reason})`;
    steps.push(
      underUnit && persist
        ? {
            summary: `${why} through ${unit}: ACPI powerdown, quit after ${g.shutdownTimeoutSeconds}s, then kill`,
            argv: ["systemctl", "stop", "--", unit],
          }
        : stopStep(g, why),
    );
  }
  // A running QEMU holds its images: growing happens only where the guest is stopped by then.
  const imagesFree = !running || starting || action === "stop";
  g.disks.forEach((d, i) => {
    const img = actual.disks[d.path];
    const size = `${d.sizeGiB}G`;
    if (img === undefined) {
      steps.push({
        summary: `create ${d.format} disk image ${d.path} (${size})`,
        script: scriptIn(__dirname, "qemu-create-disk.sh", [
          d.path,
          d.format,
          size,
          diskMarkerPath(d.path),
        ]),
      });
    } else if (img.kind === "block-device") {
      if (img.bytes < d.sizeGiB * GIB) {
        throw new PlanError(
          `disks[${i}]: ${d.path} is a block device of ${img.bytes} bytes, smaller than sizeGiB ${d.sizeGiB}; the provider never resizes a block device (grow the volume yourself, or lower sizeGiB)`,
        );
      }
    } else if ((img.virtualSize ?? 0) < d.sizeGiB * GIB && imagesFree) {
      if (d.format === "raw" && !img.created) {
        throw new PlanError(
          `disks[${i}]: ${d.path} is a raw file the provider did not create, ${img.bytes} bytes, smaller than sizeGiB ${d.sizeGiB}; a raw file carries no signature that proves it is a disk image, so the provider grows only raw images it created (grow it yourself with qemu-img resize -f raw, or lower sizeGiB)`,
        );
      }
      steps.push({
        summary: `grow disk image ${d.path} to ${size}`,
        argv: ["qemu-img", "resize", "-q", "-f", d.format, d.path, size],
      });
    }
  });
  if (form !== undefined) {
    // systemd starts it: the unit runs the same start steps, from the start script.
    const stopped = !running || action === "stop" || action === "restart";
    steps.push(
      ...planPersistence(
        form,
        stopped ? { ...actual.persist, active: "inactive" } : actual.persist,
      ),
    );
  } else if (starting && start !== undefined) {
    steps.push(...startSteps(g, start));
  }
  if (action === "cont")
    steps.push(qmpStep(`resume paused guest ${g.name}`, p.qmpSocket, [qmpCommand("cont")]));
  if (action === "wakeup")
    steps.push(
      qmpStep(`wake suspended guest ${g.name}`, p.qmpSocket, [qmpCommand("system_wakeup")]),
    );
  return steps;
}
