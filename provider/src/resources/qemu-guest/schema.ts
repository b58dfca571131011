import { z } from "zod";
import { InterfaceName, MacAddress } from "../../net";
import { Persistence, PersistedBy, type PersistedState } from "../../persist/persistence";

// Paths and names end up inside QEMU option lists (`-drive file=...,format=...`) where ',' separates
// options, and in socat addresses where ':' and ',' are special; they are refused rather than escaped.
const AbsolutePath = z
  .string()
  .min(2, "must be an absolute path")
  .max(4000, "must be at most 4000 characters")
  .refine((p) => p.startsWith("/"), "must be an absolute path")
  .refine(
    (p) => !/[,\p{Cc}]/u.test(p),
    "must not contain ',' or control characters (QEMU option syntax)",
  )
  .refine((p) => !p.split("/").includes(".."), "must not contain '..'");

/** Guest names: used in file paths, the QMP socket path and `-name`. */
export const GuestName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
    "must be 1 to 63 characters of letters, digits, '_', '.' or '-', starting with a letter or digit",
  );

const UserName = z
  .string()
  .regex(
    /^[a-z_][a-z0-9_-]{0,31}$/,
    "must be a user name (lowercase letters, digits, '_' or '-', at most 32)",
  );

export const Disk = z
  .object({
    path: AbsolutePath.describe(
      "Absolute path of the image; created with `qemu-img create` when missing, never overwritten or shrunk.",
    ),
    format: z.enum(["qcow2", "raw"]).default("qcow2").describe("Image format: qcow2 or raw."),
    sizeGiB: z
      .number()
      .int("must be a whole number of GiB")
      .min(1, "must be at least 1")
      .max(65536, "must be at most 65536")
      .describe(
        "Virtual size in GiB; a larger value grows an existing image while the guest is stopped.",
      ),
  })
  .strict()
  .meta({ id: "QemuGuestDisk", description: "A disk image attached as a virtio disk." });
export type Disk = z.infer<typeof Disk>;

export const Nic = z
  .object({
    mac: MacAddress.describe(
      "The guest NIC's MAC address (required: QEMU's default MACs collide between guests; refused when another guest on the host uses it).",
    ),
    model: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{0,31}$/,
        "must be a QEMU device model name such as virtio-net-pci or e1000",
      )
      .default("virtio-net-pci")
      .describe("The QEMU NIC device model."),
    tap: InterfaceName.optional().describe(
      "An existing tap device (`-netdev tap,ifname=...,script=no,downscript=no`). Exactly one of `tap` and `bridge`.",
    ),
    bridge: InterfaceName.optional().describe(
      "A bridge joined through qemu-bridge-helper (needs `allow <bridge>` in /etc/qemu/bridge.conf).",
    ),
  })
  .strict()
  .superRefine((n, ctx) => {
    if ((n.tap === undefined) === (n.bridge === undefined)) {
      ctx.addIssue({ code: "custom", message: "give exactly one of tap or bridge" });
    }
  })
  .meta({ id: "QemuGuestNic", description: "A guest NIC on a tap or a bridge." });
export type Nic = z.infer<typeof Nic>;

const DISPLAY_RE = /^(none|vnc=(\d{1,3}(\.\d{1,3}){3})?:\d{1,4})$/;

export const QemuGuestInputs = z
  .object({
    name: GuestName.describe(
      "Guest name (1-63 characters): `-name`, and the paths the provider owns for it.",
    ),
    memoryMiB: z
      .number()
      .int("must be a whole number of MiB")
      .min(16, "must be at least 16")
      .max(4194304, "must be at most 4194304")
      .default(512)
      .describe("Memory in MiB."),
    cpus: z
      .number()
      .int("must be a whole number")
      .min(1, "must be at least 1")
      .max(288, "must be at most 288")
      .default(1)
      .describe("Virtual CPUs."),
    machine: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "must be a QEMU machine type such as q35 or pc")
      .default("q35")
      .describe("QEMU machine type."),
    accel: z
      .enum(["kvm", "tcg", "auto"])
      .default("auto")
      .describe(
        "kvm, tcg, or auto: KVM when it works on the host at the start, TCG otherwise (with a warning when the host has /dev/kvm).",
      ),
    disks: z
      .array(Disk)
      .max(16, "at most 16 disks")
      .default([])
      .describe("Disk images attached as virtio disks, in order."),
    cdrom: AbsolutePath.optional().describe("An ISO image attached as a CD-ROM."),
    kernel: AbsolutePath.optional().describe("A kernel to boot directly (`-kernel`)."),
    initrd: AbsolutePath.optional().describe("An initramfs for `kernel` (`-initrd`)."),
    kernelArgs: z
      .string()
      .max(4096, "must be at most 4096 characters")
      .refine((s) => !/\p{Cc}/u.test(s), "must not contain control characters")
      .optional()
      .describe("The kernel command line for `kernel` (`-append`)."),
    nics: z
      .array(Nic)
      .max(16, "at most 16 NICs")
      .default([])
      .describe("NICs in order; each needs a MAC and exactly one of tap or bridge."),
    display: z
      .string()
      .regex(DISPLAY_RE, 'must be "none" or "vnc=<address>:<display>" such as "vnc=127.0.0.1:1"')
      .default("none")
      .describe('"none" or a VNC server "vnc=<address>:<display>" (e.g. "vnc=127.0.0.1:1").'),
    serialLog: z
      .boolean()
      .default(true)
      .describe("Write the serial console (ttyS0) to /var/log/pulumi-hypervisor/qemu/<name>.log."),
    running: z
      .boolean()
      .default(true)
      .describe("Whether the guest runs; false shuts it down through QMP. Applied live."),
    runAs: UserName.optional().describe(
      "Drop QEMU's privileges to this user after start-up (`-runas`).",
    ),
    bootOrder: z
      .string()
      .regex(/^[acdn]{1,4}$/, 'must be 1 to 4 of the letters a, c, d, n (e.g. "dc")')
      .refine((s) => new Set(s).size === s.length, "must not repeat a letter")
      .optional()
      .describe(
        'Boot order: drive letters a (floppy), c (disk), d (CD-ROM), n (network), e.g. "dc".',
      ),
    deleteDisks: z
      .boolean()
      .default(false)
      .describe(
        "Remove the disk images when the guest is deleted or replaced (otherwise they are kept). Applied live.",
      ),
    shutdownTimeoutSeconds: z
      .number()
      .int("must be a whole number of seconds")
      .min(0, "must be at least 0")
      .max(3600, "must be at most 3600")
      .default(60)
      .describe(
        "Seconds a shutdown waits for the guest to power off after ACPI powerdown before QMP `quit`; also the grace a guest gets when the host shuts down. Applied live.",
      ),
    autostart: z
      .boolean()
      .optional()
      .describe(
        'Start the guest when the host boots (its systemd unit enabled), after the provider\'s units of its taps, bridges and the dnsmasq serving them, never waiting for network-online.target. Unset: wherever the guest persists (systemd as PID 1, persistence "auto"); true where it cannot persist (no systemd, or persistence "none") is a plan error; `running: false` is never started at boot. Applied live.',
      ),
    persistence: Persistence,
  })
  .strict()
  .superRefine((g, ctx) => {
    if (g.kernel === undefined) {
      if (g.initrd !== undefined)
        ctx.addIssue({ code: "custom", path: ["initrd"], message: "needs kernel" });
      if (g.kernelArgs !== undefined)
        ctx.addIssue({ code: "custom", path: ["kernelArgs"], message: "needs kernel" });
    }
    const macs = new Map<string, number>();
    g.nics.forEach((n, i) => {
      const first = macs.get(n.mac);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["nics", i, "mac"],
          message: `${n.mac} is already used by nics[${first}]`,
        });
      } else {
        macs.set(n.mac, i);
      }
    });
    const taps = new Map<string, number>();
    g.nics.forEach((n, i) => {
      if (n.tap === undefined) return;
      const first = taps.get(n.tap);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["nics", i, "tap"],
          message: `tap ${n.tap} is already used by nics[${first}]`,
        });
      } else {
        taps.set(n.tap, i);
      }
    });
    const owners = new Map<string, string>();
    const claim = (p: string | undefined, label: string, where: (string | number)[]): void => {
      if (p === undefined) return;
      const first = owners.get(p);
      if (first !== undefined)
        ctx.addIssue({ code: "custom", path: where, message: `${p} is already used by ${first}` });
      else owners.set(p, label);
    };
    g.disks.forEach((d, i) => claim(d.path, `disks[${i}]`, ["disks", i, "path"]));
    claim(g.cdrom, "cdrom", ["cdrom"]);
  });

export type QemuGuestInputs = z.infer<typeof QemuGuestInputs>;

/** What a QemuGuest reports beyond its inputs. */
export const QemuGuestOutputs = z.object({
  pid: z.number().int().optional().describe("The pid of the QEMU process while the guest runs."),
  qmpSocket: z.string().describe("Path of the guest's QMP socket on the host."),
  status: z
    .string()
    .describe(
      'QMP\'s run state ("running", "paused", ...), or "stopped" when no QEMU process runs.',
    ),
  accelUsed: z
    .enum(["kvm", "tcg"])
    .optional()
    .describe(
      'The accelerator QEMU uses while the guest runs (with accel "auto": tcg when KVM did not work at its start).',
    ),
  serialLogPath: z
    .string()
    .optional()
    .describe("Path of the serial console log on the host, when `serialLog` is on."),
  persistedBy: PersistedBy,
  persistedDrift: z
    .string()
    .optional()
    .describe(
      "How the persisted layer (unit and scripts, enablement, failed unit) differs from what the provider writes; absent when it matches.",
    ),
});

/** The QEMU process of the guest, when its pid file names a live process started for this guest. */
export interface QemuProcess {
  pid: number;
  argv: string[];
  /** From QMP query-status ("running", "paused", ...); undefined when the monitor did not answer. */
  status: string | undefined;
  /** From QMP query-kvm: "kvm" or "tcg"; undefined when the monitor did not answer. */
  accel: "kvm" | "tcg" | undefined;
  /** From QMP query-name. */
  qmpName: string | undefined;
}

/** What a disk path names on the host (a symlink is not followed). */
export type DiskKind =
  "file" | "symlink" | "directory" | "fifo" | "socket" | "char-device" | "block-device" | "other";

/** What exists at a disk's path, and for a regular file what `qemu-img info` reads in it. */
export interface DiskImage {
  kind: DiskKind;
  /** Size in bytes (`stat`). */
  bytes: number;
  /** Whether the provider created this very file (its marker names the file's device, inode and birth time). */
  created: boolean;
  /** A symlink's target. */
  target: string | undefined;
  /** qemu-img's format probe (by magic; a file without a format signature reads as raw). */
  format: string | undefined;
  virtualSize: number | undefined;
}

/** A network interface the NICs refer to, from `ip -j -d link show`. */
export interface HostLink {
  kind: string | undefined;
  /** For tun devices: "tap" or "tun". */
  tunType: string | undefined;
  master: string | undefined;
}

export interface GuestRecord {
  name: string;
  macs: string[];
}

/** Everything a plan for one guest needs, read from the host in one round trip. */
export interface QemuGuestState {
  name: string;
  /** The inputs the host was observed for (the delete plan reads deleteDisks, disks, timeouts). */
  inputs: QemuGuestInputs;
  /** Effective uid of the provider's commands on the host. */
  uid: number;
  /** Programs found on the host (absent ones are missing). */
  programs: { qemu: boolean; qemuImg: boolean; socat: boolean };
  process: QemuProcess | undefined;
  /** The provider's config file of this guest (its presence means the guest exists). */
  config: string | undefined;
  /** Provider-owned paths of the guest that exist (run dir, config dir, serial log). */
  present: { runDir: boolean; configDir: boolean; serialLog: boolean };
  /** Other guests' MACs: provider config files and other QEMU processes in this network namespace. */
  otherMacs: { mac: string; owner: string }[];
  /** The disks of the inputs by path: undefined when the file does not exist. */
  disks: Record<string, DiskImage | undefined>;
  /** The taps and bridges the NICs name, by name: undefined when absent. */
  links: Record<string, HostLink | undefined>;
  /** Lines of /etc/qemu/bridge.conf and included files; undefined when bridge.conf is absent. */
  bridgeConf: string[] | undefined;
  /** qemu-bridge-helper, when found. */
  bridgeHelper: { path: string; setuidRoot: boolean } | undefined;
  /** kernel/initrd/cdrom paths that are missing on the host. */
  missingFiles: string[];
  /** runAs: whether the user exists on the host (undefined when no runAs). */
  runAsExists: boolean | undefined;
  /** Why a running guest with accel "auto" is on TCG although the host has /dev/kvm. */
  accelFallback: string | undefined;
  /** KVM usability, probed only when a start of a guest with accel "kvm" may need it. */
  kvm: { usable: boolean; reason: string } | undefined;
  /** The persisted layer: whether PID 1 is systemd, the unit's enablement and state, its files. */
  persist: PersistedState;
  /** The MainPID systemd has for the guest's unit (undefined without systemd or when it runs nothing). */
  mainPid: number | undefined;
  /** The provider's dnsmasq instances on the host by the interface they serve (for unit ordering). */
  dnsmasqByInterface: Record<string, string[]>;
}
