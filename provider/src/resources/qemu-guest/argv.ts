import { createHash } from "node:crypto";
import type { QemuGuestInputs } from "./schema";

export const QEMU_BINARY = "qemu-system-x86_64";
export const QEMU_RUN_ROOT = "/run/pulumi-hypervisor/qemu";
export const QEMU_CONFIG_ROOT = "/etc/pulumi-hypervisor/qemu";
export const QEMU_LOG_ROOT = "/var/log/pulumi-hypervisor/qemu";
export const CONFIG_FILE_NAME = "guest.json";
/** Where the provider records the disk images it created (they outlive their guests). */
export const QEMU_DISK_MARKER_ROOT = "/var/lib/pulumi-hypervisor/qemu-disks";

/** Returns the marker file that records that the provider created the image at `path`. */
export function diskMarkerPath(path: string): string {
  return `${QEMU_DISK_MARKER_ROOT}/${createHash("sha256").update(path).digest("hex")}`;
}

export interface GuestPaths {
  runDir: string;
  pidFile: string;
  qmpSocket: string;
  configDir: string;
  configFile: string;
  serialLog: string;
  /** Why a guest with accel "auto" runs on TCG although the host has /dev/kvm (qemu-start.sh). */
  accelNote: string;
  /** What its unit runs to start it (a boot script) and to stop it. */
  startScript: string;
  stopScript: string;
}

/** Returns the paths the provider owns for a guest. */
export function guestPaths(name: string): GuestPaths {
  const runDir = `${QEMU_RUN_ROOT}/${name}`;
  const configDir = `${QEMU_CONFIG_ROOT}/${name}`;
  return {
    runDir,
    pidFile: `${runDir}/qemu.pid`,
    qmpSocket: `${runDir}/qmp.sock`,
    accelNote: `${runDir}/accel-fallback`,
    configDir,
    configFile: `${configDir}/${CONFIG_FILE_NAME}`,
    startScript: `${configDir}/start.sh`,
    stopScript: `${configDir}/stop.sh`,
    serialLog: `${QEMU_LOG_ROOT}/${name}.log`,
  };
}

export interface ArgvOptions {
  /** The accelerator decided for this start (auto resolved). */
  accel: "kvm" | "tcg";
  /** qemu-bridge-helper's path on the host, for bridge NICs. */
  bridgeHelper?: string | undefined;
}

/**
 * How a guest starts: one command line, or (accel "auto") KVM's with TCG's as the fallback, chosen
 * on the host at the moment of the start (qemu-start.sh).
 */
export type GuestStart =
  | { readonly argv: readonly string[] }
  | { readonly kvm: readonly string[]; readonly tcg: readonly string[] };

/** Returns the argv that starts the guest daemonized (QEMU exits 0 once the guest is set up). */
export function buildQemuArgv(g: QemuGuestInputs, opts: ArgvOptions): string[] {
  const p = guestPaths(g.name);
  const argv = [
    QEMU_BINARY,
    "-name",
    `guest=${g.name}`,
    "-machine",
    g.machine,
    "-accel",
    opts.accel,
    ...(opts.accel === "kvm" ? ["-cpu", "host"] : []),
    "-m",
    String(g.memoryMiB),
    "-smp",
    String(g.cpus),
    "-nodefaults",
    "-no-user-config",
    ...(g.display === "none" ? ["-display", "none"] : ["-display", g.display, "-device", "VGA"]),
    "-daemonize",
    "-pidfile",
    p.pidFile,
    "-qmp",
    `unix:${p.qmpSocket},server=on,wait=off`,
    ...(g.serialLog ? ["-serial", `file:${p.serialLog}`] : []),
    ...(g.runAs !== undefined ? ["-runas", g.runAs] : []),
    ...(g.bootOrder !== undefined ? ["-boot", `order=${g.bootOrder}`] : []),
    ...(g.kernel !== undefined ? ["-kernel", g.kernel] : []),
    ...(g.initrd !== undefined ? ["-initrd", g.initrd] : []),
    ...(g.kernelArgs !== undefined ? ["-append", g.kernelArgs] : []),
  ];
  g.disks.forEach((d) => argv.push("-drive", `file=${d.path},format=${d.format},if=virtio`));
  if (g.cdrom !== undefined) argv.push("-drive", `file=${g.cdrom},media=cdrom,readonly=on`);
  g.nics.forEach((n, i) => {
    const id = `net${i}`;
    if (n.tap !== undefined) {
      argv.push("-netdev", `tap,id=${id},ifname=${n.tap},script=no,downscript=no`);
    } else {
      const helper = opts.bridgeHelper !== undefined ? `,helper=${opts.bridgeHelper}` : "";
      argv.push("-netdev", `bridge,id=${id},br=${n.bridge ?? ""}${helper}`);
    }
    argv.push("-device", `${n.model},netdev=${id},mac=${n.mac}`);
  });
  return argv;
}

/** Returns the MAC addresses a QEMU command line gives its NICs (`mac=` and legacy `macaddr=`). */
export function macsInArgv(argv: readonly string[]): string[] {
  const macs: string[] = [];
  for (const arg of argv) {
    for (const opt of arg.split(",")) {
      const m = /^(?:mac|macaddr)=([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})$/.exec(opt);
      if (m?.[1] !== undefined) macs.push(m[1].toLowerCase());
    }
  }
  return macs;
}

/** Returns the accelerator a QEMU command line asks for, when it says. */
export function accelInArgv(argv: readonly string[]): "kvm" | "tcg" | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-enable-kvm") return "kvm";
    if (a === "-accel" || a === "-machine" || a === "-M") {
      const v = argv[i + 1] ?? "";
      const m = a === "-accel" ? /^(?:accel=)?([a-z]+)/.exec(v) : /(?:^|,)accel=([a-z]+)/.exec(v);
      if (m?.[1] === "kvm" || m?.[1] === "tcg") return m[1];
    }
  }
  return undefined;
}

/** Returns the guest name a QEMU command line gives (`-name guest=<name>` or `-name <name>`). */
export function nameInArgv(argv: readonly string[]): string | undefined {
  const i = argv.indexOf("-name");
  const v = i >= 0 ? argv[i + 1] : undefined;
  if (v === undefined) return undefined;
  const m = /(?:^|,)guest=([^,]*)/.exec(v);
  return m?.[1] ?? v.split(",")[0];
}

/** Returns the content of the guest's config file: what it is and which MACs it owns. */
export function renderGuestConfig(g: QemuGuestInputs): string {
  // What only decides whether and when it runs is not part of what the guest is.
  const { running: _running, autostart: _autostart, persistence: _persistence, ...recorded } = g;
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>)
              .filter(([, x]) => x !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
              .map(([k, x]) => [k, sorted(x)]),
          )
        : v;
  return (
    JSON.stringify({
      managedBy: "pulumi-hypervisor",
      kind: "QemuGuest",
      name: g.name,
      macs: g.nics.map((n) => n.mac),
      inputs: sorted(recorded),
    }) + "\n"
  );
}
