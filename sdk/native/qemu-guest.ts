import * as pulumi from "@pulumi/pulumi";
import type { QemuGuestArgs as DynamicQemuGuestArgs } from "../qemu-guest";
import { nativeProps, withSecretConnection, type NativeConnectionInput } from "./common";

/** The inputs of the native QemuGuest: those of the dynamic class, `connection` optional. */
export type QemuGuestArgs = Omit<DynamicQemuGuestArgs, "connection"> & NativeConnectionInput;

/** A QEMU guest on a hypervisor host, run daemonized and managed through QMP. Served by the native plugin (`hypervisor:index:QemuGuest`). */
export class QemuGuest extends pulumi.CustomResource {
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
  /** During preview only: the steps the provider would run on the host. */
  declare readonly plannedSteps: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: QemuGuestArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "hypervisor:index:QemuGuest",
      name,
      nativeProps(args, {
        pid: undefined,
        qmpSocket: undefined,
        status: undefined,
        accelUsed: undefined,
        serialLogPath: undefined,
      }),
      withSecretConnection(opts),
    );
  }
}
