import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { dynamicProvider, withSecretConnection } from "./provider";

export interface QemuGuestDiskArgs {
  /** Absolute path of the image; created with `qemu-img create` when missing, never overwritten or shrunk. */
  path: pulumi.Input<string>;
  /** "qcow2" (default) or "raw". */
  format?: pulumi.Input<"qcow2" | "raw">;
  /** Virtual size in GiB; a larger value grows an existing image while the guest is stopped. */
  sizeGiB: pulumi.Input<number>;
}

export interface QemuGuestNicArgs {
  /** The guest NIC's MAC address (required; refused when another guest on the host uses it). */
  mac: pulumi.Input<string>;
  /** QEMU device model (default "virtio-net-pci"). */
  model?: pulumi.Input<string>;
  /** An existing tap device. Exactly one of `tap` and `bridge`. */
  tap?: pulumi.Input<string>;
  /** A bridge joined through qemu-bridge-helper (needs `allow <bridge>` in /etc/qemu/bridge.conf). */
  bridge?: pulumi.Input<string>;
}

export interface QemuGuestArgs {
  /** How to reach the host (secret). */
  connection: pulumi.Input<ConnectionArgs>;
  /** Guest name (1-63 characters); a change replaces the guest. */
  name: pulumi.Input<string>;
  /** Memory in MiB (default 512); a change replaces (restarts) the guest. */
  memoryMiB?: pulumi.Input<number>;
  /** Virtual CPUs (default 1); a change replaces (restarts) the guest. */
  cpus?: pulumi.Input<number>;
  /** QEMU machine type (default "q35"); a change replaces the guest. */
  machine?: pulumi.Input<string>;
  /** "kvm", "tcg" or "auto" (default: KVM when it works on the host, TCG otherwise). */
  accel?: pulumi.Input<"kvm" | "tcg" | "auto">;
  /** Disk images, attached as virtio disks in order; a change replaces the guest. */
  disks?: pulumi.Input<pulumi.Input<QemuGuestDiskArgs>[]>;
  /** An ISO image attached as a CD-ROM; a change replaces the guest. */
  cdrom?: pulumi.Input<string>;
  /** A kernel to boot directly; a change replaces the guest. */
  kernel?: pulumi.Input<string>;
  /** An initramfs for `kernel`; a change replaces the guest. */
  initrd?: pulumi.Input<string>;
  /** The kernel command line for `kernel`; a change replaces the guest. */
  kernelArgs?: pulumi.Input<string>;
  /** NICs in order; a change replaces the guest. */
  nics?: pulumi.Input<pulumi.Input<QemuGuestNicArgs>[]>;
  /** "none" (default) or "vnc=<address>:<display>"; a change replaces the guest. */
  display?: pulumi.Input<string>;
  /** Serial console to /var/log/pulumi-hypervisor/qemu/<name>.log (default true); a change replaces the guest. */
  serialLog?: pulumi.Input<boolean>;
  /** Whether the guest runs (default true); applied live (QMP powerdown / start). */
  running?: pulumi.Input<boolean>;
  /** Drop QEMU's privileges to this user after start-up; a change replaces the guest. */
  runAs?: pulumi.Input<string>;
  /** Boot order, e.g. "dc" (CD-ROM, then disk); a change replaces the guest. */
  bootOrder?: pulumi.Input<string>;
  /** Remove the disk images when the guest is deleted, or replaced (default false). */
  deleteDisks?: pulumi.Input<boolean>;
  /** Seconds to wait for an ACPI powerdown before QMP `quit` (default 60). */
  shutdownTimeoutSeconds?: pulumi.Input<number>;
}

/** A QEMU guest on a hypervisor host, run daemonized and managed through QMP. */
export class QemuGuest extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  declare readonly memoryMiB: pulumi.Output<number | undefined>;
  declare readonly cpus: pulumi.Output<number | undefined>;
  declare readonly machine: pulumi.Output<string | undefined>;
  declare readonly accel: pulumi.Output<string | undefined>;
  declare readonly running: pulumi.Output<boolean | undefined>;
  /** The QEMU process id, when it runs. */
  declare readonly pid: pulumi.Output<number | undefined>;
  /** Path of the QMP monitor socket on the host. */
  declare readonly qmpSocket: pulumi.Output<string>;
  /** QMP run state ("running", "paused", ...) or "stopped". */
  declare readonly status: pulumi.Output<string>;
  /** "kvm" or "tcg" while the guest runs. */
  declare readonly accelUsed: pulumi.Output<string | undefined>;
  /** Path of the serial console log on the host, when `serialLog` is on. */
  declare readonly serialLogPath: pulumi.Output<string | undefined>;

  constructor(name: string, args: QemuGuestArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      dynamicProvider("QemuGuest"),
      name,
      {
        pid: undefined,
        qmpSocket: undefined,
        status: undefined,
        accelUsed: undefined,
        serialLogPath: undefined,
        ...args,
        connection: pulumi.secret(args.connection),
      },
      withSecretConnection(opts),
      "hypervisor",
      "QemuGuest",
    );
  }
}
