// TapDevice on a real lab host, driven through the dynamic-provider plugin the way the engine does.
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import {
  PluginError,
  type DynamicProviderPlugin,
  type Engine,
  type ResourceSpec,
} from "../../lab/engine/engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";
import { scriptArgv } from "../../provider/src/host/script";
import { observeCall, parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";

// Guest networks inside the lab hosts (first three octets of a /24).
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);
const NET_2 = labGuestNet(2);
const NET_3 = labGuestNet(3);

const LAB = "ptap";

let lab: Lab;
let host: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: LAB, hosts: 1 }));
  host = lab.hosts[0]!;
});

afterAll(() => stopLabWithEngine({ lab, plugin }));

async function sh(argv: string[]): Promise<string> {
  const r = await host.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

interface IpLink {
  ifindex: number;
  ifname: string;
  address: string;
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

/** Returns the interface as `ip -j -d link show` reports it inside the lab host, or undefined. */
async function link(name: string): Promise<IpLink | undefined> {
  const links = JSON.parse(await sh(["ip", "-j", "-d", "link", "show"])) as IpLink[];
  return links.find((l) => l.ifname === name);
}

async function sysctl(key: string): Promise<string> {
  return (await sh(["cat", `/proc/sys/${key}`])).trim();
}

async function hostRoutes(dev: string): Promise<string[]> {
  const routes = JSON.parse(await sh(["ip", "-j", "route", "show", "table", "main"])) as Array<{
    dst: string;
    dev?: string;
    protocol?: string;
  }>;
  return routes
    .filter((r) => r.dev === dev)
    .map((r) => `${r.dst} ${r.protocol ?? "boot"}`)
    .sort();
}

/** Reads one resource through the plugin and expects the observed properties to equal the recorded ones. */
async function expectNoDrift(name: string): Promise<void> {
  const s = engine.state.get(name);
  if (!s) throw new Error(`${name} is not in the state`);
  const r = await plugin.read(s.id, s.urn, s.outputs, s.inputs);
  expect(r.id).toBe(s.id);
  expect(r.properties).toEqual(s.outputs);
}

const tap = (
  name: string,
  inputs: Record<string, unknown>,
  dependsOn?: string[],
): Promise<ResourceSpec> =>
  spec("TapDevice", name, { connection: host.connection(), name, ...inputs }, dependsOn);
const bridge = (name: string, addresses: string[]): Promise<ResourceSpec> =>
  spec("Bridge", name, { connection: host.connection(), name, addresses });

describe("TapDevice on a lab host", () => {
  it("fails check for bad inputs without opening an SSH connection", async () => {
    const before = await host.sshConnectionCount();
    const { failures } = await engine.preview([
      await tap("bad0", { bridge: "br0", routed: { addresses: [`${NET_0}.5`] } }),
      await spec("TapDevice", "bad1", { connection: host.connection(), name: "tap-name-16chars" }),
      await tap("bad2", { routed: { addresses: [`${NET_0}.300`] } }),
    ]);
    expect(failures["bad0"]?.map((f) => f.reason)).toEqual([
      "routed: bridge and routed are mutually exclusive: a tap is either a bridge port or routed with host routes; set one of them",
    ]);
    expect(failures["bad1"]?.map((f) => f.property)).toEqual(["name"]);
    expect(failures["bad1"]?.[0]?.reason).toMatch(/^name: must be 1 to 15 characters/);
    expect(failures["bad2"]?.map((f) => f.reason)).toEqual([
      `routed.addresses[0]: "${NET_0}.300" is not an IP address`,
    ]);
    expect(await host.sshConnectionCount()).toBe(before);
  });

  it("attaches a tap to a bridge, re-attaches it live to another, shows its owner", async () => {
    const bridges = [
      await bridge("br0", [`${NET_0}.1/24`]),
      await bridge("br1", [`${NET_1}.1/24`]),
    ];
    const inputs = { bridge: "br0", owner: "hvsudo", group: "hvpass", vnetHdr: true, mtu: 1400 };
    await engine.up([...bridges, await tap("tap0", inputs, ["br0", "br1"])]);

    const created = await link("tap0");
    expect(created?.master).toBe("br0");
    expect(created?.flags).toContain("UP");
    expect(created?.linkinfo?.info_data).toMatchObject({
      type: "tap",
      vnet_hdr: true,
      multi_queue: false,
      persist: true,
      user: "hvsudo",
      group: "hvpass",
    });
    const ports = JSON.parse(await sh(["bridge", "-j", "link", "show"])) as Array<{
      ifname: string;
      master?: string;
    }>;
    expect(ports.filter((p) => p.ifname === "tap0").map((p) => p.master)).toEqual(["br0"]);
    expect(engine.state.get("tap0")?.outputs["macAddress"]).toBe(created?.address);
    // What read observes matches what was asked for: no drift right after create.
    await expectNoDrift("tap0");

    const moved = { ...inputs, bridge: "br1" };
    const preview = await engine.preview([...bridges, await tap("tap0", moved, ["br0", "br1"])]);
    expect(preview.steps.find((s) => s.name === "tap0")?.op).toBe("update");
    await engine.up([...bridges, await tap("tap0", moved, ["br0", "br1"])]);
    const after = await link("tap0");
    expect(after?.master).toBe("br1");
    expect(after?.ifindex).toBe(created?.ifindex);

    // Without `bridge` the tap is not attached: detached live, same interface.
    const { bridge: _br, ...detached } = moved;
    await engine.up([...bridges, await tap("tap0", detached, ["br0", "br1"])]);
    const detachedLink = await link("tap0");
    expect(detachedLink?.ifindex).toBe(created?.ifindex);
    expect(detachedLink?.master).toBeUndefined();

    const reowned = await engine.preview([
      ...bridges,
      await tap("tap0", { ...detached, owner: "hvpass" }, ["br0", "br1"]),
    ]);
    expect(reowned.steps.find((s) => s.name === "tap0")).toMatchObject({
      op: "replace",
      detail: { replaces: ["owner"], deleteBeforeReplace: true },
    });

    await engine.destroy();
    expect(await link("tap0")).toBeUndefined();
    expect(await link("br0")).toBeUndefined();
  });

  it("routes a tap with host routes and proxy ARP, restoring forwarding only when the last claim goes", async () => {
    await sh(["ip", "link", "add", "wl0", "type", "veth", "peer", "name", "wl0p"]);
    try {
      const forwardBefore = await sysctl("net/ipv4/ip_forward");
      expect(forwardBefore).toBe("0");
      const tap1 = await tap("tap1", {
        routed: { addresses: [`${NET_2}.10`, `${NET_2}.11/32`], proxyArpInterface: "wl0" },
      });
      const tap2 = await tap("tap2", {
        routed: { addresses: [`${NET_3}.10`], proxyArpInterface: "wl0" },
      });
      await engine.up([tap1, tap2]);

      expect(await hostRoutes("tap1")).toEqual([`${NET_2}.10 static`, `${NET_2}.11 static`]);
      expect(await hostRoutes("tap2")).toEqual([`${NET_3}.10 static`]);
      expect([
        await sysctl("net/ipv4/conf/tap1/proxy_arp"),
        await sysctl("net/ipv4/conf/wl0/proxy_arp"),
        await sysctl("net/ipv4/ip_forward"),
      ]).toEqual(["1", "1", "1"]);
      await expectNoDrift("tap2");
      // tap1's input "<NET_2>.11/32" is recorded canonically, so refresh sees no drift.
      expect((await engine.refresh()).steps.map((s) => `${s.name} ${s.op}`)).toEqual([
        "tap1 same",
        "tap2 same",
      ]);
      expect((await engine.preview([tap1, tap2])).steps.map((s) => `${s.name} ${s.op}`)).toEqual([
        "tap1 same",
        "tap2 same",
      ]);

      // tap1 goes; tap2 still needs forwarding and proxy ARP on wl0.
      await engine.up([tap2]);
      expect(await link("tap1")).toBeUndefined();
      expect(await hostRoutes("tap1")).toEqual([]);
      expect([
        await sysctl("net/ipv4/conf/wl0/proxy_arp"),
        await sysctl("net/ipv4/ip_forward"),
      ]).toEqual(["1", "1"]);

      // tap2 no longer routed: its probe lists only the routes via itself now, and the routes it
      // added go with its claims; a route via tap2 that someone added by hand stays
      await sh(["ip", "route", "add", `${NET_3}.20/32`, "dev", "tap2"]);
      expect((await engine.up([await tap("tap2", {})])).steps.map((s) => s.op)).toEqual(["update"]);
      expect(await hostRoutes("tap2")).toEqual([`${NET_3}.20 boot`]);
      expect([
        await sysctl("net/ipv4/conf/wl0/proxy_arp"),
        await sysctl("net/ipv4/ip_forward"),
      ]).toEqual(["0", forwardBefore]);
      await expectNoDrift("tap2");

      await engine.destroy();
      expect(await link("tap2")).toBeUndefined();
      expect(await hostRoutes("tap2")).toEqual([]);
    } finally {
      await host.exec(["ip", "link", "del", "wl0"]);
    }
  });

  it("refuses to delete a tap a process holds, naming it, and deletes it once the process exits", async () => {
    await engine.up([await tap("tap3", {})]);
    const holder = await holdTap("tap3");
    try {
      expect(await destroyError()).toMatch(
        new RegExp(
          `tap device "tap3" on root@${host.address.replace(/\./g, "\\.")}:22: ${inUse("tap3", holder.pid)}`,
        ),
      );
      expect(await link("tap3")).toBeDefined();
      expect(engine.state.has("tap3")).toBe(true);
    } finally {
      await stopHolder(holder);
    }
    await engine.destroy();
    expect(await link("tap3")).toBeUndefined();
    expect(engine.state.size).toBe(0);
  });

  it("scans for holders only where the carrier says one may be; a held tap whose carrier is forced off is still not deleted", async () => {
    await engine.up([await tap("tap7", {})]);
    const look = async (): Promise<{ holders: number[] | undefined; unattached: boolean }> => {
      const out = await sh(scriptArgv(observeCall(TapDeviceInputs.parse({ name: "tap7" }))));
      return {
        holders: parseTapDeviceState("tap7", out).holders?.map((h) => h.pid),
        unattached: /\n--pulumi-hypervisor-- holders\nunattached\n/.test(out),
      };
    };
    // up, single-queue, nobody attached: no scan
    expect(await look()).toEqual({ holders: [], unattached: true });
    const holder = await holdTap("tap7");
    try {
      // attached: the carrier is on, the scan finds the holder
      expect(await look()).toEqual({ holders: [holder.pid], unattached: false });
      // a carrier forced off hides the holder from the look...
      await sh(["ip", "link", "set", "dev", "tap7", "carrier", "off"]);
      expect(await look()).toEqual({ holders: [], unattached: true });
      // ...but the kernel refuses the delete (EBUSY), which names the holder, and the tap stays
      expect(await destroyError()).toMatch(new RegExp(inUse("tap7", holder.pid)));
      expect((await link("tap7"))?.linkinfo?.info_data?.["persist"]).toBe(true);
      expect(engine.state.has("tap7")).toBe(true);
    } finally {
      await stopHolder(holder);
    }
    await engine.destroy();
    expect(await link("tap7")).toBeUndefined();
  });

  it("scans for the holders of a multi-queue tap, and of a tap holding sysctl claims, whatever the carrier", async () => {
    await sh(["ip", "tuntap", "add", "dev", "tap8", "mode", "tap", "multi_queue"]);
    try {
      await sh(["ip", "link", "set", "dev", "tap8", "up"]);
      const out = await sh(scriptArgv(observeCall(TapDeviceInputs.parse({ name: "tap8" }))));
      expect(out).not.toMatch(/\nunattached\n/);
      expect(parseTapDeviceState("tap8", out).holders).toEqual([]);
    } finally {
      await sh(["ip", "link", "del", "tap8"]);
    }
    // a tap holding sysctl claims: a delete releases them before the tap goes
    await sh(["ip", "tuntap", "add", "dev", "tap8", "mode", "tap"]);
    const claim = "/run/pulumi-hypervisor/sysctl/net/ipv4/ip_forward/tapdevice-tap8";
    await sh(["sh", "-c", `mkdir -p "\${1%/*}" && : > "$1"`, "sh", claim]);
    try {
      await sh(["ip", "link", "set", "dev", "tap8", "up"]);
      const out = await sh(scriptArgv(observeCall(TapDeviceInputs.parse({ name: "tap8" }))));
      expect(out).not.toMatch(/\nunattached\n/);
    } finally {
      await sh(["rm", "-f", claim]);
      await sh(["ip", "link", "del", "tap8"]);
    }
  });

  it("finds a tap's holder, with the shell's namespace test and without it, and not a same-named tap's in another namespace", async () => {
    await sh(["ip", "tuntap", "add", "dev", "tap6", "mode", "tap"]);
    const holder = await holdTap("tap6");
    // a tap6 of its own, in a network namespace of its own (a container's): another device
    const stranger = await holdTap("tap6", ["unshare", "--net", "--"]);
    try {
      const parsed = TapDeviceInputs.parse({ name: "tap6" });
      const [shell, c, body, ...rest] = scriptArgv(observeCall(parsed));
      const holders = async (prefix: string): Promise<number[] | undefined> => {
        const out = await sh([shell!, c!, prefix + body!, ...rest]);
        return parseTapDeviceState("tap6", out).holders?.map((h) => h.pid);
      };
      expect(stranger.pid).not.toBe(holder.pid);
      // namespaces compared by `test -ef` (dash has it), and by readlink's text where a shell lacks it
      expect(await holders("")).toEqual([holder.pid]);
      expect(await holders("_same_ns_ef=0\n")).toEqual([holder.pid]);
    } finally {
      await stopHolder(stranger);
      await stopHolder(holder);
      await sh(["ip", "link", "del", "tap6"]);
    }
  });

  it("reads no sysctl values for a tap that is not routed, does not exist and holds no claims", async () => {
    const probe = async (inputs: Record<string, unknown>): Promise<string[]> => {
      const parsed = TapDeviceInputs.parse({ name: "tap5", ...inputs });
      const out = await sh(scriptArgv(observeCall(parsed)));
      return Object.keys(parseTapDeviceState("tap5", out).sysctls).sort();
    };
    const own = "net/ipv4/conf/tap5/proxy_arp";
    const base = ["net/ipv4/conf/default/proxy_arp", "net/ipv4/ip_forward"];
    // absent: a create's first look and a delete's last one read nothing
    expect(await probe({})).toEqual([]);
    // a routed tap needs forwarding and its uplink's proxy ARP before it exists
    expect(await probe({ routed: { addresses: [`${NET_2}.9`], proxyArpInterface: "lo" } })).toEqual(
      [...base, "net/ipv4/conf/lo/proxy_arp", own].sort(),
    );
    // a claim left by an older configuration is read, and so are the others
    const claim = "/run/pulumi-hypervisor/sysctl/net/ipv4/ip_forward/tapdevice-tap5";
    await sh(["sh", "-c", `mkdir -p "\${1%/*}" && : > "$1"`, "sh", claim]);
    try {
      expect(await probe({})).toEqual([...base, own].sort());
    } finally {
      await sh(["rm", "-f", claim]);
    }
    // once it exists, its proxy_arp against the host's default
    await sh(["ip", "tuntap", "add", "dev", "tap5", "mode", "tap"]);
    try {
      expect(await probe({})).toEqual([...base, own].sort());
    } finally {
      await sh(["ip", "link", "del", "tap5"]);
    }
  });

  it("refresh finds a tap deleted by hand gone", async () => {
    await engine.up([await tap("tap4", { mtu: 9000 })]);
    expect((await link("tap4"))?.linkinfo?.info_kind).toBe("tun");
    await sh(["ip", "link", "del", "tap4"]);
    const { steps } = await engine.refresh();
    expect(steps).toEqual([{ op: "refresh-gone", name: "tap4", detail: { id: "tap4" } }]);
    expect(engine.state.size).toBe(0);
  });
});

/** Returns the message of the error the engine's destroy fails with. */
async function destroyError(): Promise<string> {
  const err = await engine.destroy().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PluginError);
  return (err as PluginError).message;
}

/** The pattern of the error naming holdTap's process as the holder of a tap. */
const inUse = (tap: string, pid: number): string =>
  `${tap} is in use by pid ${pid} \\(/usr/bin/python3 -c .*\\); stop that process before deleting the tap`;

// A process in the lab host's namespaces that attaches to the tap (TUNSETIFF on /dev/net/tun),
// as QEMU does with `-netdev tap,ifname=...,script=no`. nsenter execs python3, so the pid is python's.
const HOLD_TAP = [
  "import fcntl, os, signal, struct, sys",
  "fd = os.open('/dev/net/tun', os.O_RDWR)",
  "fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x0002 | 0x1000))",
  "print('ready', flush=True)",
  "signal.pause()",
].join("\n");

// `wrap` runs python3 through another command that execs it (unshare --net: a namespace of its own).
async function holdTap(
  name: string,
  wrap: string[] = [],
): Promise<{ pid: number; child: ChildProcess }> {
  const child = spawn(
    "nsenter",
    [
      "-t",
      String(host.holderPid),
      "-m",
      "-u",
      "-n",
      "--",
      ...wrap,
      "/usr/bin/python3",
      "-c",
      HOLD_TAP,
      name,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) resolve();
    });
    child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    child.on("exit", (code) => reject(new Error(`tap holder exited ${code}: ${err}`)));
  });
  return { pid: child.pid!, child };
}

async function stopHolder(h: { pid: number; child: ChildProcess }): Promise<void> {
  if (h.child.exitCode !== null || h.child.signalCode !== null) return;
  const exited = new Promise((resolve) => h.child.once("exit", resolve));
  process.kill(h.pid, "SIGTERM");
  await exited;
}
