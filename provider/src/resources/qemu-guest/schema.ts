import { z } from "zod";
import { InterfaceName, MacAddress } from "../../net";

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
    /** The image file; created with `qemu-img create` when missing, never overwritten or shrunk. */
    path: AbsolutePath,
    /** Image format (default qcow2). */
    format: z.enum(["qcow2", "raw"]).default("qcow2"),
    /** Virtual size in GiB; a larger value grows the image while the guest is stopped. */
    sizeGiB: z
      .number()
      .int("must be a whole number of GiB")
      .min(1, "must be at least 1")
      .max(65536, "must be at most 65536"),
  })
  .strict();
export type Disk = z.infer<typeof Disk>;

export const Nic = z
  .object({
    /** The guest's MAC address (required: QEMU's default MACs collide between guests). */
    mac: MacAddress,
    /** The QEMU NIC device model (default virtio-net-pci). */
    model: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{0,31}$/,
        "must be a QEMU device model name such as virtio-net-pci or e1000",
      )
      .default("virtio-net-pci"),
    /** An existing tap device to use (`-netdev tap,ifname=...,script=no,downscript=no`). */
    tap: InterfaceName.optional(),
    /** A bridge to join through qemu-bridge-helper (needs `allow <bridge>` in /etc/qemu/bridge.conf). */
    bridge: InterfaceName.optional(),
  })
  .strict()
  .superRefine((n, ctx) => {
    if ((n.tap === undefined) === (n.bridge === undefined)) {
      ctx.addIssue({ code: "custom", message: "give exactly one of tap or bridge" });
    }
  });
export type Nic = z.infer<typeof Nic>;

const DISPLAY_RE = /^(none|vnc=(\d{1,3}(\.\d{1,3}){3})?:\d{1,4})$/;

export const QemuGuestInputs = z
  .object({
    /** Guest name (identity): `-name`, and the paths the provider owns for it. */
    name: GuestName,
    /** Memory in MiB (default 512). */
    memoryMiB: z
      .number()
      .int("must be a whole number of MiB")
      .min(16, "must be at least 16")
      .max(4194304, "must be at most 4194304")
      .default(512),
    /** Virtual CPUs (default 1). */
    cpus: z
      .number()
      .int("must be a whole number")
      .min(1, "must be at least 1")
      .max(288, "must be at most 288")
      .default(1),
    /** QEMU machine type (default q35). */
    machine: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "must be a QEMU machine type such as q35 or pc")
      .default("q35"),
    /** kvm, tcg, or auto (KVM when it works on the host, TCG otherwise). Default auto. */
    accel: z.enum(["kvm", "tcg", "auto"]).default("auto"),
    /** Disk images attached as virtio disks, in order. */
    disks: z.array(Disk).max(16, "at most 16 disks").default([]),
    /** An ISO image attached as a CD-ROM. */
    cdrom: AbsolutePath.optional(),
    /** A kernel to boot directly (`-kernel`). */
    kernel: AbsolutePath.optional(),
    /** An initramfs for `kernel` (`-initrd`). */
    initrd: AbsolutePath.optional(),
    /** The kernel command line for `kernel` (`-append`). */
    kernelArgs: z
      .string()
      .max(4096, "must be at most 4096 characters")
      .refine((s) => !/\p{Cc}/u.test(s), "must not contain control characters")
      .optional(),
    /** NICs in order; each needs a MAC and exactly one of tap or bridge. */
    nics: z.array(Nic).max(16, "at most 16 NICs").default([]),
    /** "none" (default) or a VNC server "vnc=<address>:<display>" (e.g. "vnc=127.0.0.1:1"). */
    display: z
      .string()
      .regex(DISPLAY_RE, 'must be "none" or "vnc=<address>:<display>" such as "vnc=127.0.0.1:1"')
      .default("none"),
    /** Write the serial console (ttyS0) to /var/log/pulumi-hypervisor/qemu/<name>.log (default true). */
    serialLog: z.boolean().default(true),
    /** Whether the guest runs (default true); false shuts it down through QMP. Applied live. */
    running: z.boolean().default(true),
    /** Drop QEMU's privileges to this user after start-up (`-runas`). */
    runAs: UserName.optional(),
    /** Boot order: drive letters a (floppy), c (disk), d (CD-ROM), n (network), e.g. "dc". */
    bootOrder: z
      .string()
      .regex(/^[acdn]{1,4}$/, 'must be 1 to 4 of the letters a, c, d, n (e.g. "dc")')
      .refine((s) => new Set(s).size === s.length, "must not repeat a letter")
      .optional(),
    /** Remove the disk images when the guest is deleted (default false: they are kept). */
    deleteDisks: z.boolean().default(false),
    /** Seconds a shutdown waits for the guest to power off after ACPI powerdown before `quit` (default 60). */
    shutdownTimeoutSeconds: z
      .number()
      .int("must be a whole number of seconds")
      .min(0, "must be at least 0")
      .max(3600, "must be at most 3600")
      .default(60),
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

/** A disk image as `qemu-img info` reports it. */
export interface DiskImage {
  format: string;
  virtualSize: number;
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
  /** KVM usability, probed only when a start may need it. */
  kvm: { usable: boolean; reason: string } | undefined;
}
