import { scriptArgv, scriptBody } from "../../provider/src/host/script";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingLinkOf } from "../support/plan-error";
import {
  accelInArgv,
  buildQemuArgv,
  diskMarkerPath,
  guestPaths,
  macsInArgv,
  nameInArgv,
  renderGuestConfig,
} from "../../provider/src/resources/qemu-guest/argv";
import { qemuGuestModule } from "../../provider/src/resources/qemu-guest";
import {
  decodeCmdline,
  observeCall,
  parseQemuGuestState,
} from "../../provider/src/resources/qemu-guest/observe";
import { bridgeAcl, planQemuGuest, stopStep } from "../../provider/src/resources/qemu-guest/plan";
import { parseQmpAnswers, qmpCommand } from "../../provider/src/resources/qemu-guest/qmp";
import {
  QemuGuestInputs,
  type DiskImage,
  type QemuGuestState,
} from "../../provider/src/resources/qemu-guest/schema";
import { guestKernelArgs, moduleLoadOrder, parseGuestLog } from "../support/guest-image";

import { RAW_A_INPUTS, RAW_B_INPUTS } from "../fixtures/qemu-capture-inputs";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");
// Real captures of the observe probe (see test/fixtures/README.md), for the inputs at the end of
// this file (A: absent, B: the rest).
const CAPTURE_ABSENT = fixture("qemu-probe-absent.txt");
const CAPTURE_RUNNING = fixture("qemu-probe-running.txt");
const CAPTURE_PAUSED = fixture("qemu-probe-paused.txt");
const CAPTURE_DEAD = fixture("qemu-probe-dead.txt");
const parse = (x: Record<string, unknown>): QemuGuestInputs => QemuGuestInputs.parse(x);
const A = (): QemuGuestInputs => parse(RAW_A_INPUTS);
const B = (): QemuGuestInputs => parse(RAW_B_INPUTS);
const absent = (): QemuGuestState => parseQemuGuestState(A(), CAPTURE_ABSENT);
const running = (): QemuGuestState => parseQemuGuestState(B(), CAPTURE_RUNNING);
const paused = (): QemuGuestState => parseQemuGuestState(B(), CAPTURE_PAUSED);
const dead = (): QemuGuestState => parseQemuGuestState(B(), CAPTURE_DEAD);
const KERNEL = "/boot/vmlinuz-6.1.0-56-cloud-amd64";
const P = guestPaths("g1");

describe("parsing the real observe probe", () => {
  it("reads an absent guest and its surroundings", () => {
    const s = absent();
    expect(s).toMatchObject({
      uid: 0,
      programs: { qemu: true, qemuImg: true, socat: true },
      process: undefined,
      config: undefined,
      present: { runDir: false, configDir: false, serialLog: false },
      disks: { "/var/lib/hv-fixture/g1.qcow2": undefined },
      bridgeHelper: { path: "/usr/lib/qemu/qemu-bridge-helper", setuidRoot: false },
      missingFiles: ["/nonexistent/initrd.img"],
      runAsExists: false,
      kvm: {
        usable: false,
        reason: "a KVM guest made no progress in 3 s (nested virtualization not working?)",
      },
    });
    expect(s.otherMacs).toEqual([
      { mac: "52:54:00:52:00:98", owner: 'guest "other"' },
      { mac: "52:54:00:52:00:99", owner: 'QEMU process 15498 ("foreign")' },
    ]);
    expect(s.links).toEqual({
      qtap0: { kind: "tun", tunType: "tap", master: "qbr0" },
      qbr0: { kind: "bridge", tunType: undefined, master: undefined },
      tun0: { kind: "tun", tunType: "tun", master: undefined },
    });
    expect(s.bridgeConf).toEqual([
      "# the admin's",
      "allow qbr0",
      "include /etc/qemu/extra.conf",
      "",
      "deny qbr9",
      "",
    ]);
    expect(qemuGuestModule.exists(s)).toBe(false);
  });

  it("reads a running guest: its own command line, QMP status and accelerator, its disks", () => {
    const s = running();
    expect(s.process).toEqual({
      pid: 15650,
      argv: buildQemuArgv(B(), { accel: "tcg", bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper" }),
      status: "running",
      accel: "tcg",
      qmpName: "g1",
    });
    expect(s.disks).toEqual({
      "/var/lib/hv-fixture/g1.qcow2": {
        kind: "file",
        bytes: 196624,
        created: true,
        target: undefined,
        format: "qcow2",
        virtualSize: 1024 ** 3,
      },
      "/var/lib/hv-fixture/g1-raw.img": {
        kind: "file",
        bytes: 1024 ** 3,
        created: true,
        target: undefined,
        format: "raw",
        virtualSize: 1024 ** 3,
      },
    });
    expect(s.config).toBe(renderGuestConfig(B()));
    expect(s.runAsExists).toBe(true);
    // The guest runs, so KVM was not probed.
    expect(s.kvm).toBeUndefined();
    expect(qemuGuestModule.exists(s)).toBe(true);
    expect(qemuGuestModule.outputs(s)).toEqual({
      pid: 15650,
      qmpSocket: "/run/pulumi-hypervisor/qemu/g1/qmp.sock",
      status: "running",
      accelUsed: "tcg",
      serialLogPath: "/var/log/pulumi-hypervisor/qemu/g1.log",
      persistedBy: "none",
      persistedDrift: undefined,
    });
    expect(qemuGuestModule.observedInputs(s, B())).toEqual({ running: true, persistence: "auto" });
    // Its own process is not counted as another user of its MACs.
    expect(s.otherMacs.map((o) => o.mac)).toEqual(["52:54:00:52:00:98", "52:54:00:52:00:99"]);
  });

  it("reads a paused guest and one whose QEMU was killed", () => {
    expect(paused().process?.status).toBe("paused");
    expect(qemuGuestModule.observedInputs(paused(), B())).toEqual({
      running: false,
      persistence: "auto",
    });
    const d = dead();
    expect(d.process).toBeUndefined();
    expect(d.present).toEqual({ runDir: true, configDir: true, serialLog: true });
    expect(qemuGuestModule.exists(d)).toBe(true);
    expect(qemuGuestModule.outputs(d)).toMatchObject({
      pid: undefined,
      status: "stopped",
      accelUsed: undefined,
    });
  });

  it("fails loudly on output it does not understand", () => {
    expect(() => parseQemuGuestState(B(), "garbage\n")).toThrow(
      /unexpected observe output \(no uid section\)/,
    );
    expect(() => decodeCmdline("zz00")).toThrow(/unexpected \/proc cmdline dump/);
    expect(() => parseQmpAnswers('{"hello": 1}\n')).toThrow(/unexpected QMP answer/);
    const badDisk = CAPTURE_DEAD.replace(/("virtual-size": )\d+/, '$1"big"');
    expect(() => parseQemuGuestState(B(), badDisk)).toThrow(
      /unexpected output of qemu-img info \/var\/lib\/hv-fixture\/g1.qcow2/,
    );
  });

  it("passes every input to the probe as a positional parameter", () => {
    const call = observeCall(A(), true);
    expect(call.name).toBe("resources/qemu-guest/qemu-probe.sh");
    expect(call.args).toEqual([
      "g1",
      P.pidFile,
      P.qmpSocket,
      P.configFile,
      P.runDir,
      P.configDir,
      P.serialLog,
      "nosuchuser",
      "q35", // the machine type KVM is probed with
      "1",
      "1",
      "/var/lib/hv-fixture/g1.qcow2",
      diskMarkerPath("/var/lib/hv-fixture/g1.qcow2"),
      "3",
      "qtap0",
      "qbr0",
      "tun0",
      "2",
      KERNEL,
      "/nonexistent/initrd.img",
      "pulumi-hypervisor-qemu-g1.service",
      "/etc/systemd/system/pulumi-hypervisor-qemu-g1.service",
      "/etc/pulumi-hypervisor/qemu/g1/start.sh",
      "/etc/pulumi-hypervisor/qemu/g1/stop.sh",
    ]);
    expect(scriptBody(call.name)).not.toContain("g1");
  });
});

describe("planQemuGuest", () => {
  const valid = (x: Record<string, unknown> = {}): QemuGuestInputs => {
    const { runAs: _r, initrd: _i, ...rest } = RAW_A_INPUTS;
    return parse({
      ...rest,
      nics: [
        { mac: "52:54:00:52:00:10", tap: "qtap0" },
        { mac: "52:54:00:52:00:11", bridge: "qbr0" },
      ],
      ...x,
    });
  };

  it("creates an absent guest: config, disk, runtime directory, then QEMU, KVM or TCG chosen at the start", () => {
    const g = valid();
    const argv = buildQemuArgv(g, {
      accel: "tcg",
      bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper",
    });
    const kvm = buildQemuArgv(g, {
      accel: "kvm",
      bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper",
    });
    expect(planQemuGuest(g, absent())).toEqual([
      {
        summary: `write ${P.configFile}`,
        writeFile: { path: P.configFile, content: renderGuestConfig(g), mode: 0o600 },
      },
      {
        summary: "create qcow2 disk image /var/lib/hv-fixture/g1.qcow2 (1G)",
        script: {
          name: "resources/qemu-guest/qemu-create-disk.sh",
          args: [
            "/var/lib/hv-fixture/g1.qcow2",
            "qcow2",
            "1G",
            "/var/lib/pulumi-hypervisor/qemu-disks/b349606ee8a11d29852d7d979bc13f36fffd97575403bfc70e27451ba0b6c26e",
          ],
        },
      },
      {
        summary: `create ${P.runDir} and /var/log/pulumi-hypervisor/qemu`,
        argv: ["mkdir", "-p", "--", P.runDir, "/var/log/pulumi-hypervisor/qemu"],
      },
      {
        // accel "auto": the KVM probe runs on the host at the start, with TCG as the fallback.
        summary: "start guest g1 (KVM if it works, else TCG; 512 MiB, 1 cpu)",
        script: {
          name: "resources/qemu-guest/qemu-start.sh",
          args: ["q35", P.pidFile, P.accelNote, String(kvm.length), ...kvm, ...argv],
        },
      },
    ]);
    expect(kvm.slice(5, 9)).toEqual(["-accel", "kvm", "-cpu", "host"]);
    // tcg: the command line itself; kvm: refused early where the probe says KVM does not work.
    expect(planQemuGuest({ ...g, accel: "tcg" }, absent()).at(-1)).toEqual({
      summary: "start guest g1 (tcg, 512 MiB, 1 cpu)",
      argv,
    });
    expect(() => planQemuGuest({ ...g, accel: "kvm" }, absent())).toThrow(
      'accel: kvm was asked for but KVM does not work on this host (a KVM guest made no progress in 3 s (nested virtualization not working?)); use accel "auto" or "tcg"',
    );
    expect(argv).toEqual([
      "qemu-system-x86_64",
      "-name",
      "guest=g1",
      "-machine",
      "q35",
      "-accel",
      "tcg",
      "-m",
      "512",
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-daemonize",
      "-pidfile",
      "/run/pulumi-hypervisor/qemu/g1/qemu.pid",
      "-qmp",
      "unix:/run/pulumi-hypervisor/qemu/g1/qmp.sock,server=on,wait=off",
      "-serial",
      "file:/var/log/pulumi-hypervisor/qemu/g1.log",
      "-kernel",
      KERNEL,
      "-drive",
      "file=/var/lib/hv-fixture/g1.qcow2,format=qcow2,if=virtio",
      "-netdev",
      "tap,id=net0,ifname=qtap0,script=no,downscript=no",
      "-device",
      "virtio-net-pci,netdev=net0,mac=52:54:00:52:00:10",
      "-netdev",
      "bridge,id=net1,br=qbr0,helper=/usr/lib/qemu/qemu-bridge-helper",
      "-device",
      "virtio-net-pci,netdev=net1,mac=52:54:00:52:00:11",
    ]);
  });

  it("creates a stopped guest without starting QEMU", () => {
    expect(planQemuGuest(valid({ running: false }), absent()).map((s) => s.summary)).toEqual([
      `write ${P.configFile}`,
      "create qcow2 disk image /var/lib/hv-fixture/g1.qcow2 (1G)",
    ]);
  });

  it("refuses what cannot work, naming the property", () => {
    const s = absent();
    expect(() => planQemuGuest(A(), s)).toThrow(
      'runAs: user "nosuchuser" does not exist on the host',
    );
    expect(() => planQemuGuest(valid({ initrd: "/nonexistent/initrd.img" }), s)).toThrow(
      "initrd: /nonexistent/initrd.img does not exist on the host (or is not readable)",
    );
    expect(() =>
      planQemuGuest(valid({ nics: [{ mac: "52:54:00:52:00:12", tap: "tun0" }] }), s),
    ).toThrow("nics[0].tap: tun0 is not a tap device (kind tun)");
    expect(() =>
      planQemuGuest(valid({ nics: [{ mac: "52:54:00:52:00:12", tap: "qtap7" }] }), s),
    ).toThrow("nics[0].tap: qtap7 does not exist on the host; create the tap first (TapDevice)");
    expect(
      [{ tap: "qtap7" }, { bridge: "nobr0" }, { tap: "tun0" }].map((nic) =>
        missingLinkOf(() =>
          planQemuGuest(valid({ nics: [{ mac: "52:54:00:52:00:12", ...nic }] }), s),
        ),
      ),
    ).toEqual(["qtap7", "nobr0", undefined]);
    expect(() =>
      planQemuGuest(valid({ nics: [{ mac: "52:54:00:52:00:12", bridge: "qtap0" }] }), s),
    ).toThrow("nics[0].bridge: qtap0 is not a bridge (kind tun)");
    expect(() => planQemuGuest(valid({ accel: "kvm" }), s)).toThrow(
      'accel: kvm was asked for but KVM does not work on this host (a KVM guest made no progress in 3 s (nested virtualization not working?)); use accel "auto" or "tcg"',
    );
  });

  it("refuses a MAC another guest's config or another QEMU process uses", () => {
    const s = absent();
    expect(() =>
      planQemuGuest(valid({ nics: [{ mac: "52:54:00:52:00:98", tap: "qtap0" }] }), s),
    ).toThrow(
      'nics[0].mac: 52:54:00:52:00:98 is already used by guest "other" on this host; give each guest its own MAC',
    );
    expect(() =>
      planQemuGuest(
        valid({
          nics: [
            { mac: "52:54:00:52:00:10", tap: "qtap0" },
            { mac: "52:54:00:52:00:99", tap: "qtap0x" },
          ],
        }),
        s,
      ),
    ).toThrow(
      'nics[1].mac: 52:54:00:52:00:99 is already used by QEMU process 15498 ("foreign") on this host',
    );
  });

  it("refuses a bridge qemu-bridge-helper would refuse, and a non-setuid helper for a non-root user", () => {
    const s = absent();
    const bridged = valid({ nics: [{ mac: "52:54:00:52:00:11", bridge: "qbr0" }] });
    expect(() => planQemuGuest(bridged, { ...s, bridgeConf: undefined })).toThrow(
      'nics[0].bridge: /etc/qemu/bridge.conf does not exist, so qemu-bridge-helper refuses every bridge; add "allow qbr0" (Bridge allowQemuBridgeHelper: true)',
    );
    expect(() => planQemuGuest(bridged, { ...s, bridgeConf: ["allow qbr1"] })).toThrow(
      "nics[0].bridge: /etc/qemu/bridge.conf does not allow qbr0",
    );
    expect(() => planQemuGuest(bridged, { ...s, bridgeConf: ["allow all", "deny qbr0"] })).toThrow(
      "nics[0].bridge: /etc/qemu/bridge.conf denies qbr0 (deny wins over allow)",
    );
    expect(() => planQemuGuest(bridged, { ...s, uid: 1000 })).toThrow(
      'nics[0].bridge: /usr/lib/qemu/qemu-bridge-helper is not setuid root and QEMU would run as uid 1000, so the helper cannot add a tap to qbr0; run "chmod u+s /usr/lib/qemu/qemu-bridge-helper" on the host',
    );
    const setuid = {
      ...s,
      uid: 1000,
      bridgeHelper: { path: "/usr/lib/qemu/qemu-bridge-helper", setuidRoot: true },
    };
    expect(
      planQemuGuest(bridged, setuid)
        .map((x) => x.summary)
        .at(-1),
    ).toBe("start guest g1 (KVM if it works, else TCG; 512 MiB, 1 cpu)");
    expect(() => planQemuGuest(bridged, { ...s, bridgeHelper: undefined })).toThrow(
      "nics[0].bridge: qemu-bridge-helper is not installed on the host (Debian package qemu-system-common)",
    );
  });

  it("names a missing socat, qemu or qemu-img", () => {
    const s = absent();
    expect(() =>
      planQemuGuest(valid(), { ...s, programs: { ...s.programs, socat: false } }),
    ).toThrow(
      "socat is not installed on the host; the provider talks to QEMU's QMP monitor through it (Debian package socat)",
    );
    expect(() =>
      planQemuGuest(valid(), { ...s, programs: { ...s.programs, qemu: false } }),
    ).toThrow("qemu-system-x86_64 is not installed on the host (Debian package qemu-system-x86)");
    expect(() =>
      planQemuGuest(valid(), { ...s, programs: { ...s.programs, qemuImg: false } }),
    ).toThrow("qemu-img is not installed on the host (Debian package qemu-utils)");
  });

  it("refuses to overwrite an image of another format", () => {
    const s = running();
    expect(() =>
      planQemuGuest(
        parse({ ...RAW_B_INPUTS, disks: [{ path: "/var/lib/hv-fixture/g1-raw.img", sizeGiB: 1 }] }),
        s,
      ),
    ).toThrow(
      "disks[0]: /var/lib/hv-fixture/g1-raw.img is not a qcow2 image (qemu-img reads it as raw: it has no image format signature); refusing to use, grow or delete it (fix the format or the path)",
    );
  });

  // What stands at a disk path, as the probe reports it; the fixtures' images are the provider's.
  const atDisk = (path: string, d: Partial<DiskImage>): QemuGuestState => {
    const s = dead();
    const img = s.disks[path];
    if (img === undefined) throw new Error(`no ${path} in the fixture`);
    return { ...s, disks: { ...s.disks, [path]: { ...img, ...d } } };
  };
  const RAW = "/var/lib/hv-fixture/g1-raw.img";
  const QCOW = "/var/lib/hv-fixture/g1.qcow2";

  it("refuses a raw disk that is not whole sectors, and never grows a raw file the provider did not create", () => {
    // A 25-byte text file declared raw: qemu-img reads any file as raw.
    const text = atDisk(RAW, { created: false, bytes: 25, virtualSize: 25 });
    expect(() => planQemuGuest(B(), text)).toThrow(
      `disks[1]: ${RAW} is not a raw disk image: its size, 25 bytes, is not a whole number of 512-byte sectors; refusing to use, grow or delete it (fix the path)`,
    );
    // Whole sectors, but not the provider's: used as it is, never grown.
    const foreign = atDisk(RAW, { created: false });
    expect(() => planQemuGuest(B(), foreign)).toThrow(
      `disks[1]: ${RAW} is a raw file the provider did not create, 1073741824 bytes, smaller than sizeGiB 2; a raw file carries no signature that proves it is a disk image, so the provider grows only raw images it created`,
    );
    const fits = parse({ ...RAW_B_INPUTS, disks: [{ path: RAW, format: "raw", sizeGiB: 1 }] });
    expect(planQemuGuest(fits, foreign).map((x) => x.summary)).not.toContain(
      expect.stringMatching(/disk image/),
    );
    // The provider's own raw image is grown (the stopped guest is started after).
    expect(planQemuGuest(B(), dead()).map((x) => x.summary)).toContain(
      `grow disk image ${RAW} to 2G`,
    );
    // A qcow2 is proven by its magic: grown whoever made it.
    const big = parse({ ...RAW_B_INPUTS, disks: [{ path: QCOW, sizeGiB: 3 }] });
    expect(planQemuGuest(big, atDisk(QCOW, { created: false })).map((x) => x.summary)).toContain(
      `grow disk image ${QCOW} to 3G`,
    );
  });

  it("refuses disk paths that are not image files: symlinks, directories, FIFOs, devices", () => {
    const cases: Array<[Partial<DiskImage>, string]> = [
      [
        { kind: "symlink", target: "/etc/shadow", format: undefined, virtualSize: undefined },
        `disks[0]: ${QCOW} is a symlink to /etc/shadow, and the provider does not follow disk symlinks; refusing to use, grow or delete it (give the image's own path)`,
      ],
      [
        { kind: "fifo", format: undefined, virtualSize: undefined },
        `disks[0]: ${QCOW} is a fifo, not an image file or block device; refusing to use, grow or delete it (the provider uses image files and block devices only)`,
      ],
      [
        { kind: "block-device", format: undefined, virtualSize: undefined },
        `disks[0]: ${QCOW} is a block device, which is a raw disk; refusing to use, grow or delete it (declare format "raw")`,
      ],
      [
        { kind: "char-device", format: undefined, virtualSize: undefined },
        `disks[0]: ${QCOW} is a char-device, not an image file or block device; refusing to use, grow or delete it (the provider uses image files and block devices only)`,
      ],
      [
        { kind: "directory", format: undefined, virtualSize: undefined },
        `disks[0]: ${QCOW} is a directory, not an image file or block device;`,
      ],
    ];
    for (const [d, message] of cases) {
      expect(() => planQemuGuest(B(), atDisk(QCOW, { created: false, ...d }))).toThrow(message);
    }
  });

  it("uses a block device as a raw disk as it is: never grown, created or deleted", () => {
    const dev = { kind: "block-device" as const, format: undefined, virtualSize: undefined };
    const big = atDisk(RAW, { created: false, ...dev, bytes: 4 * 2 ** 30 });
    expect(planQemuGuest(B(), big).map((x) => x.summary)).not.toContain(
      expect.stringMatching(/disk image/),
    );
    const small = atDisk(RAW, { created: false, ...dev, bytes: 2 ** 30 });
    expect(() => planQemuGuest(B(), small)).toThrow(
      `disks[1]: ${RAW} is a block device of 1073741824 bytes, smaller than sizeGiB 2; the provider never resizes a block device`,
    );
    const steps = planQemuGuest(undefined, { ...big, inputs: { ...B(), deleteDisks: true } });
    expect(steps.map((x) => x.summary)).not.toContain(
      `remove disk image ${RAW} (deleteDisks; the provider created it)`,
    );
  });

  it("deletes only the disk images the provider created, through a script that checks again", () => {
    const g = { ...B(), deleteDisks: true };
    const s = atDisk(RAW, { created: false });
    const steps = planQemuGuest(undefined, { ...s, inputs: g });
    expect(steps.filter((x) => x.summary.includes("disk image"))).toEqual([
      {
        summary: `remove disk image ${QCOW} (deleteDisks; the provider created it)`,
        script: {
          name: "resources/qemu-guest/qemu-delete-disk.sh",
          args: [QCOW, diskMarkerPath(QCOW)],
        },
      },
    ]);
  });

  it("is empty when the running guest matches (and does not grow a disk under a running QEMU)", () => {
    expect(planQemuGuest(B(), running())).toEqual([]);
    // What only a start needs (kernel, taps, bridges, user) does not matter to a running guest,
    // nor to a stopped one that stays stopped.
    const gone = { links: {}, missingFiles: [KERNEL], runAsExists: false, bridgeConf: undefined };
    expect(planQemuGuest(B(), { ...running(), ...gone })).toEqual([]);
    const off = { ...B(), running: false };
    expect(planQemuGuest(off, { ...dead(), ...gone, config: renderGuestConfig(off) })).toEqual([
      {
        summary: "grow disk image /var/lib/hv-fixture/g1-raw.img to 2G",
        argv: ["qemu-img", "resize", "-q", "-f", "raw", "/var/lib/hv-fixture/g1-raw.img", "2G"],
      },
    ]);
    expect(() => planQemuGuest(B(), { ...dead(), ...gone })).toThrow(
      'runAs: user "hvsudo" does not exist on the host',
    );
  });

  it("shuts a running guest down for running: false, and resumes a paused one", () => {
    const off = { ...B(), running: false };
    expect(planQemuGuest(off, running())).toEqual([
      stopStep(off, "stop guest g1"),
      {
        summary: "grow disk image /var/lib/hv-fixture/g1-raw.img to 2G",
        argv: ["qemu-img", "resize", "-q", "-f", "raw", "/var/lib/hv-fixture/g1-raw.img", "2G"],
      },
    ]);
    expect(planQemuGuest(B(), paused())).toEqual([
      {
        summary: "resume paused guest g1",
        script: {
          name: "resources/qemu-guest/qmp-step.sh",
          args: [P.qmpSocket, qmpCommand("cont")],
        },
      },
    ]);
  });

  it("starts a killed guest again, growing its raw disk first", () => {
    const argv = buildQemuArgv(B(), {
      accel: "tcg",
      bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper",
    });
    const kvm = buildQemuArgv(B(), {
      accel: "kvm",
      bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper",
    });
    expect(planQemuGuest(B(), dead())).toEqual([
      {
        summary: "grow disk image /var/lib/hv-fixture/g1-raw.img to 2G",
        argv: ["qemu-img", "resize", "-q", "-f", "raw", "/var/lib/hv-fixture/g1-raw.img", "2G"],
      },
      {
        summary: `create ${P.runDir} and /var/log/pulumi-hypervisor/qemu`,
        argv: ["mkdir", "-p", "--", P.runDir, "/var/log/pulumi-hypervisor/qemu"],
      },
      {
        summary: "start guest g1 (KVM if it works, else TCG; 128 MiB, 1 cpu)",
        script: {
          name: "resources/qemu-guest/qemu-start.sh",
          args: ["q35", P.pidFile, P.accelNote, String(kvm.length), ...kvm, ...argv],
        },
      },
    ]);
    expect(argv).toContain("-runas");
  });

  it("restarts a guest whose command line differs (drift), keeping its accelerator", () => {
    const more = { ...B(), memoryMiB: 256 };
    expect(planQemuGuest(more, running()).map((s) => s.summary)).toEqual([
      `write ${P.configFile}`,
      "stop guest g1 to restart it (its command line differs from the inputs): ACPI powerdown, quit after 60s, then kill",
      "grow disk image /var/lib/hv-fixture/g1-raw.img to 2G",
      `create ${P.runDir} and /var/log/pulumi-hypervisor/qemu`,
      "start guest g1 (KVM if it works, else TCG; 256 MiB, 1 cpu)",
    ]);
    // accel "auto" runs with whichever it got at its start: TCG here, no restart for that alone.
    expect(planQemuGuest(B(), running())).toEqual([]);
    const kvmArgv = buildQemuArgv(B(), {
      accel: "kvm",
      bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper",
    });
    const onKvm = running();
    expect(
      planQemuGuest(B(), { ...onKvm, process: { ...onKvm.process!, argv: kvmArgv, accel: "kvm" } }),
    ).toEqual([]);
  });

  it("deletes the process and the provider's files, and disk images only with deleteDisks", () => {
    const s = running();
    expect(planQemuGuest(undefined, s)).toEqual([
      stopStep(B(), "stop guest g1 (pid 15650)"),
      { summary: `remove ${P.runDir}`, argv: ["rm", "-rf", "--", P.runDir] },
      { summary: `remove ${P.configDir}`, argv: ["rm", "-rf", "--", P.configDir] },
      { summary: `remove the serial log ${P.serialLog}`, argv: ["rm", "-f", "--", P.serialLog] },
    ]);
    const withDisks = parseQemuGuestState({ ...B(), deleteDisks: true }, CAPTURE_DEAD);
    expect(planQemuGuest(undefined, withDisks).map((x) => x.summary)).toEqual([
      `remove ${P.runDir}`,
      `remove ${P.configDir}`,
      `remove the serial log ${P.serialLog}`,
      "remove disk image /var/lib/hv-fixture/g1.qcow2 (deleteDisks; the provider created it)",
      "remove disk image /var/lib/hv-fixture/g1-raw.img (deleteDisks; the provider created it)",
    ]);
    expect(planQemuGuest(undefined, absent())).toEqual([]);
  });

  it("replaces on command-line inputs and applies running, deleteDisks and the timeout in place", () => {
    expect([...qemuGuestModule.identity].sort()).toEqual(
      [
        "accel",
        "bootOrder",
        "cdrom",
        "cpus",
        "disks",
        "display",
        "initrd",
        "kernel",
        "kernelArgs",
        "machine",
        "memoryMiB",
        "name",
        "nics",
        "runAs",
        "serialLog",
      ].sort(),
    );
  });
});

describe("the stop step on a real /bin/sh", () => {
  function run(
    argv: readonly string[],
    env: Record<string, string> = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const c = spawn(argv[0] ?? "false", argv.slice(1), {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...env },
      });
      let stdout = "";
      let stderr = "";
      c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      c.on("error", reject);
      c.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  it("terminates a process that does not answer QMP, succeeds when nothing runs, and leaves other pids alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qg-stop-"));
    try {
      const pidfile = join(dir, "qemu.pid");
      // A stand-in for QEMU: its command line names the pid file, like QEMU's does.
      const child = spawn(process.execPath, ["-e", "setTimeout(() => undefined, 30000)", pidfile], {
        stdio: "ignore",
      });
      const stranger = spawn("sleep", ["30"], { stdio: "ignore" });
      writeFileSync(pidfile, `${child.pid}\n`);
      const exited = new Promise<number | null>((r) =>
        child.on("exit", (_c, sig) => r(sig === "SIGTERM" ? 15 : null)),
      );
      const step = stopStep(parse({ name: "g1", shutdownTimeoutSeconds: 1 }), "stop");
      if (!("script" in step)) throw new Error("stop step runs a script");
      const argv = scriptArgv({ ...step.script, args: [pidfile, join(dir, "qmp.sock"), "1"] });
      const r = await run(argv);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^guest stopped: SIGTERM \(\d+ s\)\n$/);
      expect(await exited).toBe(15);
      // Not ours any more (pid file gone): nothing to do, success.
      expect(await run(argv)).toMatchObject({ code: 0, stdout: "" });
      // A pid file naming someone else's process is not followed.
      writeFileSync(pidfile, `${stranger.pid}\n`);
      expect(await run(argv)).toMatchObject({ code: 0, stdout: "" });
      expect(stranger.exitCode).toBeNull();
      stranger.kill("SIGKILL");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives up on a monitor that never answers within QMP_SECONDS and kills a QEMU that ignores SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qg-stop-"));
    // A monitor that accepts and never greets: QEMU frozen, as far as a client can tell.
    const sock = join(dir, "qmp.sock");
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(sock, r));
    try {
      const pidfile = join(dir, "qemu.pid");
      const child = spawn(
        process.execPath,
        [
          "-e",
          "process.on('SIGTERM', () => undefined); setTimeout(() => undefined, 30000)",
          pidfile,
        ],
        { stdio: "ignore" },
      );
      writeFileSync(pidfile, `${child.pid}\n`);
      const exited = new Promise<string | null>((r) => child.on("exit", (_c, sig) => r(sig)));
      const step = stopStep(parse({ name: "g1", shutdownTimeoutSeconds: 30 }), "stop");
      if (!("script" in step)) throw new Error("stop step runs a script");
      const argv = scriptArgv({ ...step.script, args: [pidfile, sock, "30"] });
      const t0 = Date.now();
      const r = await run(argv, { QMP_SECONDS: "1" });
      const ms = Date.now() - t0;
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^guest stopped: SIGKILL \(\d+ s\)\n$/);
      expect(r.stderr).toContain(`qmp: no answer on ${sock} within 1s`);
      expect(await exited).toBe("SIGKILL");
      // 1 s for the unanswered powerdown (no grace, no quit: the monitor is dead), 5 s for SIGTERM.
      expect(ms).toBeLessThan(9000);
      process.stderr.write(`stop of a frozen-monitor, SIGTERM-deaf process: ${ms} ms\n`);
    } finally {
      silent.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});

describe("the disk delete step on a real /bin/sh", () => {
  it("removes the image its marker names, and keeps a file that took its place or a symlink", () => {
    const dir = mkdtempSync(join(tmpdir(), "qg-disk-"));
    try {
      const img = join(dir, "d.img");
      const marker = join(dir, "marker");
      const sh = (args: string[]): string =>
        execFileSync(
          "sh",
          ["-c", scriptBody("resources/qemu-guest/qemu-delete-disk.sh"), "x", ...args],
          {
            encoding: "utf8",
          },
        );
      const mark = (): void =>
        writeFileSync(
          marker,
          `${execFileSync("stat", ["-c", "%d %i %W", img], { encoding: "utf8" })}${img}\n`,
        );
      writeFileSync(img, "old");
      mark();
      // Another file at the path (a new inode): not the provider's.
      rmSync(img);
      writeFileSync(join(dir, "pad"), "keeps the old inode from being reused at once");
      writeFileSync(img, "someone else's");
      expect(sh([img, marker])).toBe(`kept ${img}: not the image the provider created there\n`);
      expect(readFileSync(img, "utf8")).toBe("someone else's");
      // A symlink to the marked file: kept, and so is the file.
      mark();
      const link = join(dir, "link.img");
      symlinkSync(img, link);
      expect(sh([link, marker])).toBe(`kept ${link}: not the image the provider created there\n`);
      expect(existsSync(img)).toBe(true);
      expect(sh([img, marker])).toBe(`removed ${img}\n`);
      expect(existsSync(img)).toBe(false);
      expect(existsSync(marker)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the auto start on a real /bin/sh", () => {
  it("runs the TCG command line word for word when KVM is not used, whatever the machine", () => {
    const dir = mkdtempSync(join(tmpdir(), "qg-start-"));
    try {
      // A stand-in for QEMU that records its words and exits: a KVM start "dies" at once, and the
      // KVM probe sees no boot menu, so every machine ends on the TCG command line.
      const bin = join(dir, "bin");
      mkdirSync(bin);
      writeFileSync(
        join(bin, "qemu-system-x86_64"),
        `#!/bin/sh\nn=$(ls "${dir}" | grep -c '^call') ; printf '%s\\n' "$@" > "${dir}/call.$n"\n`,
        { mode: 0o755 },
      );
      const tricky = ["a b", "$(touch x)", "'q'", '"dq"', "*", "${1}", "-accel"];
      const kvm = ["qemu-system-x86_64", "-accel", "kvm", ...tricky];
      const tcg = ["qemu-system-x86_64", "-accel", "tcg", ...tricky];
      const note = join(dir, "accel-fallback");
      const argv = scriptArgv({
        name: "resources/qemu-guest/qemu-start.sh",
        args: ["q35", join(dir, "qemu.pid"), note, String(kvm.length), ...kvm, ...tcg],
      });
      const r = spawnSync(argv[0]!, argv.slice(1), {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` },
      });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^started with TCG: /);
      const calls = readdirSync(dir)
        .filter((f) => f.startsWith("call."))
        .sort();
      const last = readFileSync(join(dir, calls[calls.length - 1]!), "utf8");
      expect(last).toBe(tcg.slice(1).join("\n") + "\n");
      expect(existsSync(join(dir, "x"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("QemuGuestInputs", () => {
  const reasons = (x: Record<string, unknown>): string[] => {
    const r = QemuGuestInputs.safeParse(x);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  it("applies defaults and canonical MACs", () => {
    expect(
      parse({
        name: "vm1",
        nics: [{ mac: "52:54:00:AB:CD:EF", tap: "tap0" }],
        disks: [{ path: "/d.img", sizeGiB: 8 }],
      }),
    ).toEqual({
      name: "vm1",
      memoryMiB: 512,
      cpus: 1,
      machine: "q35",
      accel: "auto",
      disks: [{ path: "/d.img", format: "qcow2", sizeGiB: 8 }],
      nics: [{ mac: "52:54:00:ab:cd:ef", model: "virtio-net-pci", tap: "tap0" }],
      display: "none",
      serialLog: true,
      running: true,
      deleteDisks: false,
      shutdownTimeoutSeconds: 60,
      persistence: "auto",
    });
  });
  it("rejects bad values with the property named", () => {
    expect(reasons({ name: "vm/1" })[0]).toMatch(/^name: must be 1 to 63 characters/);
    expect(reasons({ name: "-vm" })[0]).toMatch(/^name: must be 1 to 63 characters/);
    expect(reasons({ name: "vm", cpus: 1.5 })).toEqual(["cpus: must be a whole number"]);
    expect(reasons({ name: "vm", machine: "q35,accel=kvm" })[0]).toMatch(
      /^machine: must be a QEMU machine type/,
    );
    expect(reasons({ name: "vm", nics: [{ mac: "53:54:00:00:00:01", tap: "t" }] })).toEqual([
      "nics.0.mac: must be a unicast MAC (first octet even)",
    ]);
    expect(
      reasons({
        name: "vm",
        nics: [{ mac: "52:54:00:00:00:01", model: "e1000,romfile=/x", tap: "t" }],
      })[0],
    ).toMatch(/^nics.0.model: /);
    expect(
      reasons({
        name: "vm",
        nics: [
          { mac: "52:54:00:00:00:01", tap: "t" },
          { mac: "52:54:00:00:00:02", tap: "t" },
        ],
      }),
    ).toEqual(["nics.1.tap: tap t is already used by nics[0]"]);
    expect(reasons({ name: "vm", cdrom: "/a/../b.iso" })).toEqual(["cdrom: must not contain '..'"]);
    expect(
      reasons({ name: "vm", cdrom: "/x.iso", disks: [{ path: "/x.iso", sizeGiB: 1 }] }),
    ).toEqual(["cdrom: /x.iso is already used by disks[0]"]);
    expect(reasons({ name: "vm", kernel: "/k", kernelArgs: "a\nb" })).toEqual([
      "kernelArgs: must not contain control characters",
    ]);
    expect(reasons({ name: "vm", initrd: "/i" })).toEqual(["initrd: needs kernel"]);
    expect(reasons({ name: "vm", display: "gtk" })[0]).toMatch(
      /^display: must be "none" or "vnc=<address>:<display>"/,
    );
    expect(reasons({ name: "vm", runAs: "Root" })[0]).toMatch(/^runAs: must be a user name/);
    expect(reasons({ name: "vm", shutdownTimeoutSeconds: -1 })).toEqual([
      "shutdownTimeoutSeconds: must be at least 0",
    ]);
    expect(reasons({ name: "vm", disks: [{ path: "/d", sizeGiB: 1, format: "vmdk" }] })[0]).toMatch(
      /^disks.0.format: /,
    );
    expect(reasons({ name: "vm", bogus: 1 })[0]).toMatch(/bogus/);
  });
});

describe("QEMU command lines", () => {
  it("builds options for display, boot order, CD-ROM and runAs", () => {
    const argv = buildQemuArgv(
      parse({
        name: "w",
        display: "vnc=127.0.0.1:3",
        bootOrder: "dc",
        cdrom: "/iso/x.iso",
        runAs: "qemu",
        serialLog: false,
        cpus: 2,
      }),
      { accel: "kvm" },
    );
    expect(argv).toEqual([
      "qemu-system-x86_64",
      "-name",
      "guest=w",
      "-machine",
      "q35",
      "-accel",
      "kvm",
      "-cpu",
      "host",
      "-m",
      "512",
      "-smp",
      "2",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "vnc=127.0.0.1:3",
      "-device",
      "VGA",
      "-daemonize",
      "-pidfile",
      "/run/pulumi-hypervisor/qemu/w/qemu.pid",
      "-qmp",
      "unix:/run/pulumi-hypervisor/qemu/w/qmp.sock,server=on,wait=off",
      "-runas",
      "qemu",
      "-boot",
      "order=dc",
      "-drive",
      "file=/iso/x.iso,media=cdrom,readonly=on",
    ]);
  });
  it("reads MACs, accelerator and name from other QEMUs' command lines", () => {
    const libvirt = [
      "/usr/bin/qemu-system-x86_64",
      "-name",
      "guest=win10,debug-threads=on",
      "-machine",
      "pc-q35-7.2,usb=off,accel=kvm",
      "-device",
      "virtio-net-pci,netdev=hostnet0,id=net0,mac=52:54:00:AA:bb:01",
      "-net",
      "nic,macaddr=52:54:00:00:00:02",
    ];
    expect(macsInArgv(libvirt)).toEqual(["52:54:00:aa:bb:01", "52:54:00:00:00:02"]);
    expect(accelInArgv(libvirt)).toBe("kvm");
    expect(accelInArgv(["qemu", "-enable-kvm"])).toBe("kvm");
    expect(accelInArgv(["qemu", "-accel", "tcg,thread=multi"])).toBe("tcg");
    expect(accelInArgv(["qemu"])).toBeUndefined();
    expect(nameInArgv(libvirt)).toBe("win10");
    expect(nameInArgv(["qemu", "-name", "plain"])).toBe("plain");
  });
  it("follows qemu-bridge-helper's ACL: deny wins, allow all counts, comments and includes are no rules", () => {
    expect(bridgeAcl(undefined, "br0")).toBe("no-file");
    expect(bridgeAcl(["# allow br0"], "br0")).toBe("not-allowed");
    expect(bridgeAcl(["allow all"], "br0")).toBe("allowed");
    expect(bridgeAcl(["\tallow   br0  "], "br0")).toBe("allowed");
    expect(bridgeAcl(["allow br0", "deny all"], "br0")).toBe("denied");
    expect(bridgeAcl(["deny br1", "allow all"], "br0")).toBe("allowed");
  });
});

describe("the test guest image", () => {
  it("loads each module after its dependencies", () => {
    const dep = [
      "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
      "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
      "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
      "kernel/net/core/failover.ko:",
      "kernel/drivers/virtio/virtio.ko:",
      "kernel/drivers/virtio/virtio_ring.ko:",
      "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:",
      "kernel/drivers/virtio/virtio_pci_modern_dev.ko:",
    ].join("\n");
    expect(
      moduleLoadOrder(dep, ["virtio_pci", "virtio_net"]).map((f) => f.split("/").pop()),
    ).toEqual([
      "virtio_ring.ko",
      "virtio.ko",
      "virtio_pci_modern_dev.ko",
      "virtio_pci_legacy_dev.ko",
      "virtio_pci.ko",
      "failover.ko",
      "net_failover.ko",
      "virtio_net.ko",
    ]);
    expect(() => moduleLoadOrder(dep, ["e1000"])).toThrow(
      "kernel module e1000 is not in modules.dep",
    );
  });
  it("reads what the guest reported on its serial console", () => {
    const log = [
      "[    1.5] Run /init as init process",
      "hv-guest: init on kernel 6.1.0-56-cloud-amd64",
      "hv-guest: lease ip=198.18.150.20/24 router=198.18.150.1 dns=198.18.150.1 hostname=g2",
      "hv-guest: network-ready ip=198.18.150.20/24 mac=52:54:00:51:00:20",
      "hv-guest: service-ready http=80 echo=7",
      "hv-guest: ping 198.19.255.1 ok",
      "hv-guest: ping 198.18.150.11 failed",
    ].join("\r\n");
    expect(parseGuestLog(log)).toEqual({
      booted: true,
      networkReady: "198.18.150.20/24",
      lease: "ip=198.18.150.20/24 router=198.18.150.1 dns=198.18.150.1 hostname=g2",
      serviceReady: true,
      poweredOff: false,
      pings: { "198.19.255.1": "ok", "198.18.150.11": "failed" },
    });
    expect(parseGuestLog("")).toEqual({
      booted: false,
      serviceReady: false,
      poweredOff: false,
      pings: {},
    });
    expect(
      guestKernelArgs({
        address: "198.18.150.10/24",
        gateway: "198.18.150.1",
        ping: ["198.19.255.1", "198.18.150.11"],
      }),
    ).toBe(
      "console=ttyS0 panic=-1 loglevel=4 hv.ip=198.18.150.10/24 hv.gw=198.18.150.1 hv.ping=198.19.255.1,198.18.150.11",
    );
  });
});
