// QemuGuest on a real lab host: real QEMU (TCG here: nested KVM does not work on these machines)
// booting the tiny busybox guest, driven through the dynamic-provider plugin the way the engine does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import {
  PluginError,
  type DynamicProviderPlugin,
  type Engine,
  type ResourceSpec,
} from "../../lab/engine/engine";
import {
  buildGuestImage,
  guestKernelArgs,
  parseGuestLog,
  type GuestImage,
} from "../support/guest-image";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// Guest networks inside the lab hosts (first three octets of a /24).
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);

const LAB = "pqemu";
const BRIDGE = "qbr0";
const BRIDGE_ADDRESS = `${NET_0}.1`;
const GUEST_ADDRESS = `${NET_0}.10`;
const MAC1 = "52:54:00:51:00:10";
const DISK = "/var/lib/pulumi-hypervisor-test/g1-disk0.qcow2";

let lab: Lab;
let host: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let image: GuestImage;

beforeAll(async () => {
  image = await buildGuestImage();
  ({ lab, plugin, engine } = await startLabWithEngine({ name: LAB, hosts: 1, wan: true }));
  host = lab.hosts[0]!;
  await sh(["ip", "link", "add", BRIDGE, "type", "bridge"]);
  await sh(["ip", "addr", "add", `${BRIDGE_ADDRESS}/24`, "dev", BRIDGE]);
  await sh(["ip", "link", "set", BRIDGE, "up"]);
  for (const tap of ["qtap0", "qtap1"]) {
    await sh(["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
    await sh(["ip", "link", "set", tap, "master", BRIDGE]);
    await sh(["ip", "link", "set", tap, "up"]);
  }
});

afterAll(() => stopLabWithEngine({ lab, plugin }));

async function sh(argv: string[], timeoutMs?: number): Promise<string> {
  const r = await host.exec(argv, timeoutMs !== undefined ? { timeoutMs } : {});
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const guest = (name: string, inputs: Record<string, unknown>): Promise<ResourceSpec> =>
  spec("QemuGuest", name, { connection: host.connection(), name, ...inputs });

/** The tiny guest with a static address on qtap0 and one disk. */
const g1Inputs = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  memoryMiB: 256,
  accel: "auto",
  kernel: image.kernel,
  initrd: image.initrd,
  kernelArgs: guestKernelArgs({
    address: `${GUEST_ADDRESS}/24`,
    gateway: BRIDGE_ADDRESS,
    hostname: "g1",
  }),
  nics: [{ mac: MAC1, tap: "qtap0" }],
  disks: [{ path: DISK, sizeGiB: 1 }],
  shutdownTimeoutSeconds: 15,
  ...extra,
});

async function serialLog(name: string): Promise<string> {
  const r = await host.exec(["cat", `/var/log/pulumi-hypervisor/qemu/${name}.log`]);
  return r.code === 0 ? r.stdout : "";
}

/** Waits until the guest reports its network on the serial console; returns the time it took. */
async function waitForNetwork(name: string, since: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = parseGuestLog(await serialLog(name));
    if (report.serviceReady && report.networkReady !== undefined) return Date.now() - since;
    if (Date.now() > deadline) {
      throw new Error(
        `guest ${name} did not report its network within ${timeoutMs} ms; serial log:\n${await serialLog(name)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function outputs(name: string): Record<string, unknown> {
  const s = engine.state.get(name);
  if (!s) throw new Error(`${name} is not in the state`);
  return s.outputs;
}

async function cmdline(pid: number): Promise<string[]> {
  return (await sh(["cat", `/proc/${pid}/cmdline`])).split("\0").filter((a) => a !== "");
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

/**
 * Whether a KVM guest like this test's makes progress on this machine: the guests' machine type (q35)
 * with `-cpu host`, as the provider probes it (on some hosts `-cpu host` aborts on an MSR while a
 * `pc` guest with the default CPU runs); SeaBIOS must reach its boot menu in 3 s.
 */
async function kvmWorks(): Promise<boolean> {
  const r = await host.exec([
    "sh",
    "-c",
    [
      "[ -w /dev/kvm ] || exit 1",
      'd=$(mktemp -d); qemu-system-x86_64 -accel kvm -machine q35 -cpu host -m 16 -display none -nodefaults -no-user-config -debugcon "file:$d/log" -global isa-debugcon.iobase=0x402 -daemonize -pidfile "$d/pid" 2>/dev/null || exit 1',
      "sleep 3; kill -9 $(cat $d/pid); grep -q 'Booting from' $d/log; rc=$?; rm -rf $d; exit $rc",
    ].join("\n"),
  ]);
  return r.code === 0;
}

async function pingGuest(address: string): Promise<boolean> {
  const r = await host.exec(["busybox", "ping", "-c", "1", "-W", "2", address]);
  return r.code === 0;
}

describe("QemuGuest on a lab host", () => {
  it("fails check for bad inputs without opening an SSH connection", async () => {
    const before = await host.sshConnectionCount();
    const { failures } = await engine.preview([
      await guest("bad name", {}),
      await guest("bad1", { memoryMiB: 0, accel: "hvf", nics: [{ tap: "qtap0" }] }),
      await guest("bad2", {
        nics: [
          { mac: MAC1, tap: "qtap0", bridge: BRIDGE },
          { mac: MAC1.toUpperCase(), tap: "qtap1" },
        ],
        disks: [{ path: "relative.qcow2", sizeGiB: 1 }],
        kernelArgs: "console=ttyS0",
      }),
      await guest("bad3", {
        disks: [{ path: "/var/lib/a,b.qcow2", sizeGiB: 0 }],
        cdrom: "/srv/x.iso",
        bootOrder: "dd",
      }),
    ]);
    expect(failures["bad name"]?.map((f) => f.property)).toEqual(["name"]);
    expect(failures["bad1"]?.map((f) => f.reason)).toEqual([
      "memoryMiB: must be at least 16",
      'accel: Invalid option: expected one of "kvm"|"tcg"|"auto"',
      "nics[0].mac: Invalid input: expected string, received undefined",
    ]);
    expect(failures["bad2"]?.map((f) => f.reason)).toEqual([
      "disks[0].path: must be an absolute path",
      "nics[0]: give exactly one of tap or bridge",
      "kernelArgs: needs kernel",
      `nics[1].mac: ${MAC1} is already used by nics[0]`,
    ]);
    expect(failures["bad3"]?.map((f) => f.reason)).toEqual([
      "disks[0].path: must not contain ',' or control characters (QEMU option syntax)",
      "disks[0].sizeGiB: must be at least 1",
      "bootOrder: must not repeat a letter",
    ]);
    expect(await host.sshConnectionCount()).toBe(before);
  });

  it("boots the tiny guest on a tap with a static address; the host reaches its services", async ({
    annotate,
  }) => {
    // auto: KVM only where a KVM guest really runs; nested KVM here stalls, so TCG.
    const expectedAccel = (await kvmWorks()) ? "kvm" : "tcg";
    const t0 = Date.now();
    const up = await engine.up([await guest("g1", g1Inputs())]);
    const started = Date.now();
    expect(up.steps.map((s) => `${s.name} ${s.op}`)).toEqual(["g1 create"]);
    const out = outputs("g1");
    expect(out["status"]).toBe("running");
    expect(out["qmpSocket"]).toBe("/run/pulumi-hypervisor/qemu/g1/qmp.sock");
    expect(out["serialLogPath"]).toBe("/var/log/pulumi-hypervisor/qemu/g1.log");
    const pid = out["pid"] as number;
    expect(await alive(pid)).toBe(true);

    const argv = await cmdline(pid);
    expect(argv.slice(0, 3)).toEqual(["qemu-system-x86_64", "-name", "guest=g1"]);
    expect(argv).toContain("-daemonize");
    expect(argv).toContain(`tap,id=net0,ifname=qtap0,script=no,downscript=no`);
    expect(argv).toContain(`virtio-net-pci,netdev=net0,mac=${MAC1}`);
    expect(out["accelUsed"]).toBe(expectedAccel);
    expect(argv[argv.indexOf("-accel") + 1]).toBe(expectedAccel);

    const network = await waitForNetwork("g1", started);
    await annotate(
      `up (create, with the KVM probe): ${started - t0} ms; QEMU started to network (${expectedAccel}): ${network} ms`,
    );
    const report = parseGuestLog(await serialLog("g1"));
    expect(report).toMatchObject({
      booted: true,
      networkReady: `${GUEST_ADDRESS}/24`,
      serviceReady: true,
    });
    expect(await pingGuest(GUEST_ADDRESS)).toBe(true);
    expect(await sh(["busybox", "wget", "-q", "-O", "-", `http://${GUEST_ADDRESS}/`])).toBe(
      "hv-guest g1\n",
    );
    expect(
      await sh(["sh", "-c", 'echo ping-7 | busybox nc -w 2 "$1" 7', "sh", GUEST_ADDRESS]),
    ).toBe("ping-7\n");

    // The disk was created at its size, and the config the provider owns records the MAC.
    const info = JSON.parse(await sh(["qemu-img", "info", "-U", "--output=json", DISK])) as Record<
      string,
      unknown
    >;
    expect(info).toMatchObject({ format: "qcow2", "virtual-size": 1024 ** 3 });
    const config = JSON.parse(
      await sh(["cat", "/etc/pulumi-hypervisor/qemu/g1/guest.json"]),
    ) as Record<string, unknown>;
    expect(config).toMatchObject({
      managedBy: "pulumi-hypervisor",
      kind: "QemuGuest",
      name: "g1",
      macs: [MAC1],
    });

    // Read observes what was asked for: no drift; and a second up does nothing.
    const s = engine.state.get("g1")!;
    const read = await plugin.read(s.id, s.urn, s.outputs, s.inputs);
    expect(read.properties).toEqual(s.outputs);
    expect(
      (await engine.up([await guest("g1", g1Inputs())])).steps.map((x) => `${x.name} ${x.op}`),
    ).toEqual(["g1 same"]);
  });

  it("running: false powers the guest off through ACPI; running: true starts it again", async ({
    annotate,
  }) => {
    const pid = outputs("g1")["pid"] as number;
    const t1 = Date.now();
    const stop = await engine.up([await guest("g1", g1Inputs({ running: false }))]);
    await annotate(`graceful stop: ${Date.now() - t1} ms`);
    expect(stop.steps.map((s) => `${s.name} ${s.op}`)).toEqual(["g1 update"]);
    expect(outputs("g1")["status"]).toBe("stopped");
    expect(outputs("g1")["pid"]).toBeUndefined();
    expect(await alive(pid)).toBe(false);
    // The guest's /init saw the power button: a graceful shutdown, not a kill.
    expect(parseGuestLog(await serialLog("g1")).poweredOff).toBe(true);
    const s = engine.state.get("g1")!;
    expect((await plugin.read(s.id, s.urn, s.outputs, s.inputs)).properties).toEqual(s.outputs);

    const t0 = Date.now();
    await engine.up([await guest("g1", g1Inputs())]);
    expect(outputs("g1")["status"]).toBe("running");
    expect(outputs("g1")["pid"]).not.toBe(pid);
    await annotate(`restart to network: ${await waitForNetwork("g1", t0)} ms`);
    expect(await pingGuest(GUEST_ADDRESS)).toBe(true);
  });

  it("finds a QEMU killed with SIGKILL on refresh and starts it again on up", async ({
    annotate,
  }) => {
    const pid = outputs("g1")["pid"] as number;
    await sh(["kill", "-9", String(pid)]);
    const refreshed = await engine.refresh();
    expect(refreshed.steps.map((s) => `${s.name} ${s.op}`)).toEqual(["g1 refresh-changed"]);
    expect(outputs("g1")).toMatchObject({ status: "stopped", running: false });
    expect(outputs("g1")["pid"]).toBeUndefined();

    const t0 = Date.now();
    const up = await engine.up([await guest("g1", g1Inputs())]);
    expect(up.steps.map((s) => `${s.name} ${s.op}`)).toEqual(["g1 update"]);
    expect(outputs("g1")).toMatchObject({ status: "running", running: true });
    expect(outputs("g1")["pid"]).not.toBe(pid);
    await annotate(`repair to network: ${await waitForNetwork("g1", t0)} ms`);
  });

  it("refuses a MAC that another guest or QEMU process on the host uses", async () => {
    const second = await guest("g2", {
      kernel: image.kernel,
      nics: [{ mac: MAC1, tap: "qtap1" }],
      accel: "tcg",
    });
    const err = await engine.up([await guest("g1", g1Inputs()), second]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).message).toMatch(
      new RegExp(
        `nics\\[0\\]\\.mac: ${MAC1} is already used by (guest "g1"|QEMU process \\d+ \\("g1"\\)) on this host`,
      ),
    );
    expect(engine.state.has("g2")).toBe(false);
    expect((await host.exec(["test", "-e", "/etc/pulumi-hypervisor/qemu/g2"])).code).not.toBe(0);

    // A QEMU the provider does not manage counts too: its MAC is read from its command line.
    const foreignMac = "52:54:00:51:00:99";
    await sh([
      "qemu-system-x86_64",
      "-name",
      "foreign",
      "-machine",
      "pc",
      "-accel",
      "tcg",
      "-S",
      "-nodefaults",
      "-display",
      "none",
      "-daemonize",
      "-pidfile",
      "/run/foreign.pid",
      "-netdev",
      "user,id=n0",
      "-device",
      `e1000,netdev=n0,mac=${foreignMac}`,
    ]);
    const foreignPid = Number((await sh(["cat", "/run/foreign.pid"])).trim());
    try {
      const third = await guest("g3", {
        kernel: image.kernel,
        nics: [{ mac: foreignMac, tap: "qtap1" }],
        accel: "tcg",
      });
      const err3 = await engine.up([await guest("g1", g1Inputs()), third]).catch((e: unknown) => e);
      expect((err3 as Error).message).toContain(
        `nics[0].mac: ${foreignMac} is already used by QEMU process ${foreignPid} ("foreign") on this host`,
      );
    } finally {
      await sh(["kill", "-9", String(foreignPid)]);
    }
  });

  it("joins a bridge through qemu-bridge-helper only when bridge.conf allows it", async () => {
    const bridged = await guest("gb", {
      memoryMiB: 128,
      accel: "tcg",
      kernel: image.kernel,
      initrd: image.initrd,
      kernelArgs: guestKernelArgs({ address: `${NET_1}.10/24`, hostname: "gb" }),
      nics: [{ mac: "52:54:00:51:00:20", model: "e1000", bridge: BRIDGE }],
      shutdownTimeoutSeconds: 0,
    });
    const err = await engine.up([await guest("g1", g1Inputs()), bridged]).catch((e: unknown) => e);
    expect((err as Error).message).toContain(
      `nics[0].bridge: /etc/qemu/bridge.conf does not exist, so qemu-bridge-helper refuses every bridge; add "allow ${BRIDGE}"`,
    );
    await sh([
      "sh",
      "-c",
      'mkdir -p /etc/qemu && printf "allow %s\\n" "$1" > /etc/qemu/bridge.conf',
      "sh",
      BRIDGE,
    ]);
    await engine.up([await guest("g1", g1Inputs()), bridged]);
    const pid = outputs("gb")["pid"] as number;
    expect(await cmdline(pid)).toContain(
      `bridge,id=net0,br=${BRIDGE},helper=/usr/lib/qemu/qemu-bridge-helper`,
    );
    // The helper made a tap and put it on the bridge, next to the two test taps.
    const ports = JSON.parse(await sh(["ip", "-j", "link", "show", "master", BRIDGE])) as Array<{
      ifname: string;
    }>;
    expect(ports.map((p) => p.ifname).filter((n) => !n.startsWith("qtap"))).toHaveLength(1);
    // shutdownTimeoutSeconds 0: straight to QMP quit, and the helper's tap goes with QEMU.
    await engine.up([await guest("g1", g1Inputs())]);
    expect(await alive(pid)).toBe(false);
    const after = JSON.parse(await sh(["ip", "-j", "link", "show", "master", BRIDGE])) as Array<{
      ifname: string;
    }>;
    expect(after.map((p) => p.ifname).sort()).toEqual(["qtap0", "qtap1"]);
  });

  it("replaces the guest when its memory changes (delete before create, same disk)", async ({
    annotate,
  }) => {
    const pid = outputs("g1")["pid"] as number;
    const inode = (await sh(["stat", "-c", "%i", DISK])).trim();
    const preview = await engine.preview([await guest("g1", g1Inputs({ memoryMiB: 288 }))]);
    expect(preview.steps).toMatchObject([
      { name: "g1", op: "replace", detail: { replaces: ["memoryMiB"], deleteBeforeReplace: true } },
    ]);
    const t0 = Date.now();
    await engine.up([await guest("g1", g1Inputs({ memoryMiB: 288 }))]);
    const newPid = outputs("g1")["pid"] as number;
    expect(newPid).not.toBe(pid);
    expect(await alive(pid)).toBe(false);
    const argv = await cmdline(newPid);
    expect(argv[argv.indexOf("-m") + 1]).toBe("288");
    expect((await sh(["stat", "-c", "%i", DISK])).trim()).toBe(inode);
    await annotate(`replace to network: ${await waitForNetwork("g1", t0)} ms`);
  });

  it("delete keeps the disk image; deleteDisks: true removes it", async () => {
    await engine.destroy();
    expect((await host.exec(["test", "-e", "/run/pulumi-hypervisor/qemu/g1"])).code).not.toBe(0);
    expect((await host.exec(["test", "-e", "/etc/pulumi-hypervisor/qemu/g1"])).code).not.toBe(0);
    expect(
      (await host.exec(["test", "-e", "/var/log/pulumi-hypervisor/qemu/g1.log"])).code,
    ).not.toBe(0);
    const inode = (await sh(["stat", "-c", "%i", DISK])).trim();

    // The same disk again, never overwritten; then removed with the guest because deleteDisks is set.
    await engine.up([
      await guest(
        "g1",
        g1Inputs({ running: false, deleteDisks: true, disks: [{ path: DISK, sizeGiB: 2 }] }),
      ),
    ]);
    expect(outputs("g1")["status"]).toBe("stopped");
    expect((await sh(["stat", "-c", "%i", DISK])).trim()).toBe(inode);
    const info = JSON.parse(await sh(["qemu-img", "info", "--output=json", DISK])) as Record<
      string,
      unknown
    >;
    expect(info["virtual-size"]).toBe(2 * 1024 ** 3);
    await engine.destroy();
    expect((await host.exec(["test", "-e", DISK])).code).not.toBe(0);
    expect((await host.exec(["test", "-e", "/etc/pulumi-hypervisor/qemu/g1"])).code).not.toBe(0);
    // Deleting what is already gone succeeds.
    await plugin.delete(
      "g1",
      "urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:QemuGuest::g1",
      {
        connection: host.connection(),
        name: "g1",
        __provider: (await guest("g1", {})).inputs["__provider"],
      },
    );
  });
});
