// QemuGuest safety on a real lab host: disk paths that are not images of the declared format are
// refused before anything on the host changes; deleteDisks removes only images the provider made;
// a frozen QEMU and a QMP monitor held by other clients do not make a stop or a delete hang; accel
// "auto" falls back to TCG with a warning when KVM fails. Nothing here depends on whether KVM works,
// stalls or aborts on this machine: the KVM failures are made on the lab host.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { startLab, type Lab, type LabHost } from "../../lab";
import {
  DynamicProviderPlugin,
  Engine,
  PluginError,
  type ResourceSpec,
} from "../../lab/engine/engine";
import { FakeEngine } from "../../lab/engine/fake-engine";
import { REPO_ROOT, spec } from "../../lab/harness";
import { buildGuestImage, guestKernelArgs, type GuestImage } from "../support/guest-image";

const DIR = "/var/lib/q11-disks";
const TEXT = `${DIR}/notes.txt`;
const TEXT_BODY = "a text file, not a disk!\n"; // 25 bytes

let lab: Lab;
let host: LabHost;
let fake: FakeEngine;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let image: GuestImage;

beforeAll(async () => {
  image = await buildGuestImage();
  fake = await FakeEngine.start();
  lab = await startLab({ name: "pq11", hosts: 1 });
  host = lab.hosts[0]!;
  // The engine's Log service gets the provider's warnings, as `pulumi up` shows them.
  plugin = await DynamicProviderPlugin.start({ cwd: REPO_ROOT, engineAddress: fake.address });
  await plugin.configure({});
  engine = new Engine(plugin);
});

afterAll(async () => {
  try {
    await plugin?.stop();
  } finally {
    await lab?.stop();
    fake?.stop();
  }
});

async function sh(argv: string[], stdin?: string): Promise<string> {
  const r = await host.exec(argv, stdin !== undefined ? { stdin } : {});
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const guest = (name: string, inputs: Record<string, unknown>): Promise<ResourceSpec> =>
  spec("QemuGuest", name, { connection: host.connection(), name, ...inputs });

/** The tiny guest on TCG, without NICs. */
const tiny = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  memoryMiB: 128,
  accel: "tcg",
  kernel: image.kernel,
  initrd: image.initrd,
  kernelArgs: guestKernelArgs({ hostname: name }),
  shutdownTimeoutSeconds: 15,
  ...extra,
});

function outputs(name: string): Record<string, unknown> {
  const s = engine.state.get(name);
  if (!s) throw new Error(`${name} is not in the state`);
  return s.outputs;
}

async function alive(pid: number): Promise<boolean> {
  const r = await host.exec([
    "sh",
    "-c",
    'tr "\\0" "\\n" < /proc/$1/cmdline 2>/dev/null | grep -q .',
    "sh",
    String(pid),
  ]);
  return r.code === 0;
}

async function exists(path: string): Promise<boolean> {
  return (await host.exec(["test", "-e", path])).code === 0;
}

async function upError(specs: ResourceSpec[]): Promise<string> {
  const err = await engine.up(specs).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(PluginError);
  return (err as PluginError).message;
}

// Size, inode, mtime and content: what "nothing was changed" means for a file.
const fingerprint = (path: string): Promise<string> =>
  sh(["sh", "-c", 'stat -c "%s %i %Y" -- "$1" && sha256sum -- "$1"', "sh", path]);

describe("QemuGuest disk safety", () => {
  it("refuses a text file, a FIFO, a symlink and a foreign raw file to grow, changing nothing", async () => {
    await sh(["mkdir", "-p", DIR]);
    await sh(["sh", "-c", 'printf "%s" "$2" > "$1"', "sh", TEXT, TEXT_BODY]);
    await sh(["mkfifo", `${DIR}/fifo`]);
    await sh(["ln", "-s", TEXT, `${DIR}/link.img`]);
    await sh(["truncate", "-s", "1M", `${DIR}/foreign.raw`]);
    const before = await fingerprint(TEXT);
    const foreignBefore = await fingerprint(`${DIR}/foreign.raw`);
    const disk = (path: string, format: string): Promise<ResourceSpec> =>
      guest("d1", tiny("d1", { disks: [{ path, format, sizeGiB: 1 }] }));

    expect(await upError([await disk(TEXT, "raw")])).toContain(
      `disks[0]: ${TEXT} is not a raw disk image: its size, 25 bytes, is not a whole number of 512-byte sectors; refusing to use, grow or delete it (fix the path)`,
    );
    expect(await upError([await disk(TEXT, "qcow2")])).toContain(
      `disks[0]: ${TEXT} is not a qcow2 image (qemu-img reads it as raw: it has no image format signature); refusing to use, grow or delete it`,
    );
    // qemu-img would block forever opening a FIFO: the probe never opens it.
    const t0 = Date.now();
    expect(await upError([await disk(`${DIR}/fifo`, "raw")])).toContain(
      `disks[0]: ${DIR}/fifo is a fifo, not an image file or block device; refusing to use, grow or delete it`,
    );
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(await upError([await disk(`${DIR}/link.img`, "raw")])).toContain(
      `disks[0]: ${DIR}/link.img is a symlink to ${TEXT}, and the provider does not follow disk symlinks`,
    );
    expect(await upError([await disk(`${DIR}/foreign.raw`, "raw")])).toContain(
      `disks[0]: ${DIR}/foreign.raw is a raw file the provider did not create, 1048576 bytes, smaller than sizeGiB 1`,
    );

    expect(await fingerprint(TEXT)).toBe(before);
    expect(await fingerprint(`${DIR}/foreign.raw`)).toBe(foreignBefore);
    expect(await sh(["cat", TEXT])).toBe(TEXT_BODY);
    expect(await exists("/etc/pulumi-hypervisor/qemu/d1")).toBe(false);
    expect(await exists("/run/pulumi-hypervisor/qemu/d1")).toBe(false);
    expect(engine.state.has("d1")).toBe(false);
  });

  it("uses a block device (through its symlink, as /dev/vg/lv is) as a raw disk, never growing or deleting it", async () => {
    await sh(["mkdir", "-p", DIR]);
    const backing = `${DIR}/volume.backing`;
    await sh(["truncate", "-s", "2G", backing]);
    const dev = (await sh(["losetup", "--find", "--show", backing])).trim();
    try {
      await sh(["ln", "-sf", dev, `${DIR}/vol`]);
      const before = await fingerprint(backing);
      const onVolume = (sizeGiB: number): Promise<ResourceSpec> =>
        guest(
          "d3",
          tiny("d3", {
            running: false,
            deleteDisks: true,
            disks: [{ path: `${DIR}/vol`, format: "raw", sizeGiB }],
          }),
        );
      expect(await upError([await onVolume(3)])).toContain(
        `disks[0]: ${DIR}/vol is a block device of 2147483648 bytes, smaller than sizeGiB 3; the provider never resizes a block device`,
      );
      await engine.up([await onVolume(2)]);
      await engine.destroy();
      expect(await sh(["stat", "-L", "-c", "%F", `${DIR}/vol`])).toBe("block special file\n");
      expect(await fingerprint(backing)).toBe(before);
    } finally {
      await sh(["losetup", "-d", dev]);
    }
  });

  it("deleteDisks removes the image the provider created and keeps one it did not", async () => {
    const foreign = `${DIR}/foreign.qcow2`;
    const own = `${DIR}/own.qcow2`;
    await sh(["qemu-img", "create", "-q", "-f", "qcow2", foreign, "1G"]);
    const foreignBefore = await fingerprint(foreign);
    const d2 = await guest(
      "d2",
      tiny("d2", {
        running: false,
        deleteDisks: true,
        disks: [
          { path: foreign, sizeGiB: 1 },
          { path: own, sizeGiB: 1 },
        ],
      }),
    );
    await engine.up([d2]);
    expect(await exists(own)).toBe(true);
    const markers = (await sh(["ls", "/var/lib/pulumi-hypervisor/qemu-disks"])).trim().split("\n");
    expect(markers).toHaveLength(1);
    await engine.destroy();
    expect(await exists(own)).toBe(false);
    expect(await fingerprint(foreign)).toBe(foreignBefore);
    expect((await sh(["ls", "/var/lib/pulumi-hypervisor/qemu-disks"])).trim()).toBe("");
    expect(await exists("/etc/pulumi-hypervisor/qemu/d2")).toBe(false);
  });
});

describe("QemuGuest stop deadlines", () => {
  // Clients that connect to the guest's QMP socket and hold it: QEMU serves one, the listen
  // backlog takes two more, and a further connect() blocks.
  async function holdMonitor(name: string, clients: number): Promise<number[]> {
    const sock = `/run/pulumi-hypervisor/qemu/${name}/qmp.sock`;
    const out = await sh([
      "sh",
      "-c",
      'i=0; while [ "$i" -lt "$2" ]; do setsid sh -c \'sleep 600 | socat UNIX-CONNECT:"$1" - >/dev/null 2>&1\' sh "$1" </dev/null >/dev/null 2>&1 & echo $!; i=$((i + 1)); sleep 0.2; done',
      "sh",
      sock,
      String(clients),
    ]);
    return out
      .trim()
      .split("\n")
      .map((l) => Number(l));
  }

  async function release(pids: number[]): Promise<void> {
    // The holders' process groups: the sh, its sleep and its socat.
    for (const pid of pids) await host.exec(["kill", "-KILL", "--", `-${pid}`]);
  }

  it("running: false completes while other clients hold the QMP monitor; the guest is gone", async () => {
    await engine.up([await guest("h1", tiny("h1"))]);
    const pid = outputs("h1")["pid"] as number;
    const holders = await holdMonitor("h1", 4);
    try {
      // A connect() to the socket now blocks: socat -T alone would wait forever here.
      const probe = await host.exec(
        [
          "timeout",
          "3",
          "socat",
          "-T",
          "1",
          "UNIX-CONNECT:/run/pulumi-hypervisor/qemu/h1/qmp.sock",
          "-",
        ],
        { stdin: "" },
      );
      expect(probe.code).toBe(124);
      const t0 = Date.now();
      await engine.up([await guest("h1", tiny("h1", { running: false }))]);
      const ms = Date.now() - t0;
      process.stderr.write(`running: false with the QMP monitor held by 4 clients: ${ms} ms\n`);
      expect(await alive(pid)).toBe(false);
      expect(outputs("h1")["status"]).toBe("stopped");
      // The probe's 5 s and the stop's 10 s QMP deadlines, then SIGTERM: far below grace + 35 s.
      expect(ms).toBeLessThan(40_000);
    } finally {
      await release(holders);
    }
  });

  it("delete completes while other clients hold the QMP monitor; the guest is gone", async () => {
    await engine.up([await guest("h1", tiny("h1"))]);
    const pid = outputs("h1")["pid"] as number;
    const holders = await holdMonitor("h1", 4);
    try {
      const t0 = Date.now();
      await engine.destroy();
      const ms = Date.now() - t0;
      process.stderr.write(`delete with the QMP monitor held by 4 clients: ${ms} ms\n`);
      expect(await alive(pid)).toBe(false);
      expect(await exists("/run/pulumi-hypervisor/qemu/h1")).toBe(false);
      expect(await exists("/etc/pulumi-hypervisor/qemu/h1")).toBe(false);
      expect(ms).toBeLessThan(40_000);
    } finally {
      await release(holders);
    }
  });

  it("delete completes for a frozen QEMU (SIGSTOP); the guest is gone", async () => {
    await engine.up([await guest("f1", tiny("f1"))]);
    const pid = outputs("f1")["pid"] as number;
    await sh(["kill", "-STOP", String(pid)]);
    const state = await sh([
      "sh",
      "-c",
      'sed -n "s/^State:\\t//p" /proc/$1/status',
      "sh",
      String(pid),
    ]);
    expect(state).toMatch(/^T/);
    const t0 = Date.now();
    await engine.destroy();
    const ms = Date.now() - t0;
    process.stderr.write(`delete of a frozen QEMU: ${ms} ms\n`);
    expect(await alive(pid)).toBe(false);
    expect(await exists("/run/pulumi-hypervisor/qemu/f1")).toBe(false);
    expect(ms).toBeLessThan(40_000);
  });
});

// Where KVM works for the provider's probe but not for the guest's own start. The shim stands in
// for qemu-system-x86_64 in this lab host only (a tmpfs on /usr/local/bin in its private mount
// namespace, before /usr/bin in PATH): the probe's throw-away guest runs on TCG, so it reaches its
// boot menu, and a guest's KVM start fails the way QEMU does when it cannot initialise KVM.
const SHIM = `#!/bin/bash
case " $* " in *" -accel kvm "*) ;; *) exec -a qemu-system-x86_64 /usr/bin/qemu-system-x86_64 "$@" ;; esac
case " $* " in *" -name "*)
  echo "qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied (test shim)" >&2
  exit 1 ;;
esac
args=()
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case $a in -cpu) skip=1; continue ;; kvm) a=tcg ;; esac
  args+=("$a")
done
exec -a qemu-system-x86_64 /usr/bin/qemu-system-x86_64 "\${args[@]}"
`;

describe('QemuGuest accel "auto"', () => {
  const warnings = (name: string): string[] =>
    fake.messages
      .filter((m) => m.severity === "warning" && m.message.includes(`qemu guest "${name}"`))
      .map((m) => m.message);

  it("falls back to TCG with one warning when the guest's KVM start fails", async () => {
    const hasKvm = await exists("/dev/kvm");
    await sh(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/usr/local/bin"]);
    try {
      await sh(
        ["sh", "-c", "cat > /usr/local/bin/qemu-system-x86_64 && chmod 755 /usr/local/bin/*"],
        SHIM,
      );
      // The shim is this lab host's alone.
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toMatch(/ \/usr\/local\/bin /);
      await engine.up([await guest("k1", tiny("k1", { accel: "auto" }))]);
      expect(outputs("k1")["status"]).toBe("running");
      expect(outputs("k1")["accelUsed"]).toBe("tcg");
      if (hasKvm) {
        expect(warnings("k1")).toEqual([
          expect.stringMatching(
            /^qemu guest "k1" on .*: accel "auto" runs it on TCG, not KVM \(much slower\): QEMU with KVM failed to start: qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied \(test shim\)/,
          ),
        ]);
      } else {
        // No /dev/kvm at all: TCG is what auto means there, and nothing to warn about.
        expect(warnings("k1")).toEqual([]);
      }
      // The fallback is no drift: the next up leaves the guest alone, and warns no more.
      const again = await engine.up([await guest("k1", tiny("k1", { accel: "auto" }))]);
      expect(again.steps.map((s) => `${s.name} ${s.op}`)).toEqual(["k1 same"]);
      expect(warnings("k1")).toHaveLength(hasKvm ? 1 : 0);
    } finally {
      await sh(["umount", "/usr/local/bin"]);
    }
  });

  it("runs on TCG with a warning where /dev/kvm cannot be used at all", async () => {
    const hasKvm = await exists("/dev/kvm");
    // /dev/null in its place, in this lab host's mount namespace only: QEMU cannot create a VM.
    if (hasKvm) await sh(["mount", "--bind", "/dev/null", "/dev/kvm"]);
    try {
      await engine.up([await guest("k2", tiny("k2", { accel: "auto" }))]);
      expect(outputs("k2")["accelUsed"]).toBe("tcg");
      expect(warnings("k2")).toEqual(
        hasKvm
          ? [expect.stringMatching(/^qemu guest "k2" on .*: accel "auto" runs it on TCG, not KVM/)]
          : [],
      );
      process.stderr.write(`warnings for k2: ${JSON.stringify(warnings("k2"))}\n`);
    } finally {
      if (hasKvm) await sh(["umount", "/dev/kvm"]);
    }
    await engine.destroy();
  });
});
