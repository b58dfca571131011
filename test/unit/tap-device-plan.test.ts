import { describe, expect, it } from "vitest";
import { missingLinkOf } from "../support/plan-error";
import { LINK_MARKER } from "../../provider/src/link-marker";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { scriptBody } from "../../provider/src/host/script";
import {
  observeCall,
  parseHolders,
  parseHostRoutes,
  parseTapDeviceState,
  parseTapLinks,
} from "../../provider/src/resources/tap-device/observe";
import { planTapDevice } from "../../provider/src/resources/tap-device/plan";
import {
  TapDeviceInputs,
  type TapDeviceState,
} from "../../provider/src/resources/tap-device/schema";
import { sysctlCall } from "../../provider/src/sysctl";
import { fixture, tapProbeCapture } from "../support/tap-fixtures";

/** The state parsed from a real probe capture (see test/fixtures/README.md): taps made by hand. */
const capturedAsIs = (
  probe: "vm0" | "vm0-look" | "vm1" | "vm9",
  name: string = probe,
): TapDeviceState => parseTapDeviceState(name, tapProbeCapture(probe));

/** The state with the tap as the provider would see one of its own: marked with its ifalias. */
function marked(s: TapDeviceState): TapDeviceState {
  if (!s.tap) return s;
  const tap = { ...s.tap, ifalias: LINK_MARKER };
  return { ...s, tap, links: { ...s.links, [s.name]: tap } };
}

/** A real capture, the tap (when there is one) the provider's own. */
const captured = (probe: "vm0" | "vm1" | "vm9", name: string = probe): TapDeviceState =>
  marked(capturedAsIs(probe, name));
const inputs = (x: Record<string, unknown>): TapDeviceInputs => TapDeviceInputs.parse(x);

const vm0 = { name: "vm0", bridge: "br0", owner: "nobody", group: "users", vnetHdr: true };
const vm1 = {
  name: "vm1",
  routed: { addresses: ["198.18.120.5", "2001:db8::5"], proxyArpInterface: "wl0" },
  multiQueue: true,
  mtu: 9000,
};

const claim = (key: string, owner: string) => ({
  summary: `set ${key.replace(/\//g, ".")}=1 (claimed by ${owner})`,
  script: sysctlCall("claim", key, owner, "1"),
});
const release = (key: string, owner: string) => ({
  summary: `release ${key.replace(/\//g, ".")} (claimed by ${owner}); restore it if nothing else needs it`,
  script: sysctlCall("release", key, owner),
});
const setProxyArp = (name: string, value: string) => ({
  summary: `set net.ipv4.conf.${name}.proxy_arp=${value}`,
  script: { name: "resources/tap-device/tap-set-proxy-arp.sh", args: [name, value] },
});

describe("parsing the real probe output", () => {
  it("reads a bridged tap: flags, master, owner and group as numbers, names resolved, the holder", () => {
    const s = captured("vm0");
    expect(s.tap).toMatchObject({
      name: "vm0",
      kind: "tun",
      tunType: "tap",
      master: "br0",
      up: true,
      mtu: 1500,
      multiQueue: false,
      vnetHdr: true,
      persist: true,
    });
    expect(s.tap?.macAddress).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect([s.ownerId, s.groupId, s.resolvedUid, s.resolvedGid]).toEqual([65534, 100, 65534, 100]);
    expect(s.holders).toHaveLength(1);
    expect(s.holders?.[0]?.pid).toBeGreaterThan(1);
    expect(s.holders?.[0]?.command).toMatch(
      /python3 -c {2}import fcntl, os, signal, struct fd = os\.open\("\/dev\/net\/tun"/,
    );
    expect(s.sysctls["net/ipv4/conf/vm0/proxy_arp"]).toEqual({ value: "0", claimed: false });
  });

  it("a look-only probe (a refresh, the look after an apply) skips the holder scan and says so", () => {
    const look = capturedAsIs("vm0-look", "vm0");
    expect(look.holders).toBeUndefined();
    // everything else is what the full probe saw
    expect({ ...look, holders: [] }).toEqual({ ...capturedAsIs("vm0"), holders: [] });
    expect(capturedAsIs("vm0").holders).toHaveLength(1);
  });

  it("reads a routed tap: multi_queue, mtu, host routes v4 and v6, claims", () => {
    const s = captured("vm1");
    expect(s.tap).toMatchObject({ master: undefined, mtu: 9000, multiQueue: true, vnetHdr: false });
    expect([s.ownerId, s.groupId, s.resolvedUid, s.resolvedGid]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(s.hostRoutes.filter((r) => r.dev === "vm1")).toEqual([
      { family: 4, address: "198.18.120.5", dev: "vm1", protocol: "static", type: "unicast" },
      { family: 4, address: "198.18.120.7", dev: "vm1", protocol: undefined, type: "unicast" },
      { family: 6, address: "2001:db8::5", dev: "vm1", protocol: "static", type: "unicast" },
    ]);
    expect(s.sysctls).toEqual({
      "net/ipv4/ip_forward": { value: "1", claimed: true },
      "net/ipv4/conf/default/proxy_arp": { value: "0", claimed: false },
      "net/ipv4/conf/vm1/proxy_arp": { value: "1", claimed: false },
      "net/ipv4/conf/wl0/proxy_arp": { value: "1", claimed: true },
    });
    expect(s.holders).toEqual([]);
  });

  it("reads an absent tap and an owner name the host does not know", () => {
    const s = captured("vm9");
    expect(s.tap).toBeUndefined();
    expect(s.resolvedUid).toBeNull();
    expect(s.resolvedGid).toBeUndefined();
    expect(s.sysctls["net/ipv4/conf/vm9/proxy_arp"]).toEqual({ value: "-", claimed: false });
  });

  it("does not take a tun-mode device or another kind of interface for a tap", () => {
    expect(captured("vm9", "tun0").tap).toBeUndefined();
    expect(captured("vm9", "tun0").links["tun0"]).toMatchObject({ kind: "tun", tunType: "tun" });
    expect(captured("vm9", "br0").tap).toBeUndefined();
  });

  it("skips routes that are not host routes or not in the main table, keeps a hand-typed /32", () => {
    expect(
      parseHostRoutes(
        JSON.stringify([
          { dst: "default", dev: "x" },
          { dst: "10.0.0.0/24", dev: "x" },
          { dst: "10.0.0.1/32", dev: "x", type: "blackhole" },
          { type: "local", dst: "10.0.0.2", dev: "x", table: "local" },
          { dst: "10.0.0.3", dev: "x", table: "100" },
          { type: "unicast", dst: "2001:db8:0::5", dev: "x", protocol: "static", table: "main" },
          { type: "multicast", dst: "ff00::/8", dev: "x", table: "local" },
        ]),
      ),
    ).toEqual([
      { family: 4, address: "10.0.0.1", dev: "x", protocol: undefined, type: "blackhole" },
      { family: 6, address: "2001:db8::5", dev: "x", protocol: "static", type: "unicast" },
    ]);
  });

  it("lists each holding pid once", () => {
    expect(parseHolders("holder 12 qemu a\nholder 7 x\nholder 12 qemu a\nnoise\n")).toEqual([
      { pid: 7, command: "x" },
      { pid: 12, command: "qemu a" },
    ]);
    // a tap the kernel says nobody holds (not scanned) has none; a look-only probe did not look
    expect(parseHolders("unattached\n")).toEqual([]);
    expect(parseHolders("not-probed\n")).toBeUndefined();
  });

  it("fails loudly on output it does not understand", () => {
    expect(() => parseTapLinks('[{"ifname": 3}]')).toThrow(
      /unexpected output of ip -d -j link show/,
    );
    expect(() => parseTapDeviceState("vm0", "[]\n")).toThrow(
      /unexpected output of the tap probe: no section "links"/,
    );
  });

  it("passes every input to the probe as a positional parameter, never inside the script", () => {
    const call = observeCall(
      inputs({
        name: "vm1",
        owner: "qemu",
        group: 994,
        routed: { addresses: ["198.18.120.5", "2001:db8::5"], proxyArpInterface: "wl0" },
      }),
    );
    expect(call.name).toBe("resources/tap-device/tap-probe.sh");
    expect(call.args).toEqual([
      "vm1",
      "qemu",
      "",
      "",
      "pulumi-hypervisor-tap-vm1.service",
      "/etc/systemd/system/pulumi-hypervisor-tap-vm1.service",
      "/etc/pulumi-hypervisor/tap/vm1.sh",
      "/etc/NetworkManager/conf.d/pulumi-hypervisor-tap-vm1.conf",
      "/etc/systemd/network/04-pulumi-hypervisor-tap-vm1.network",
      "1", // scan for holders: a look-only probe passes 0
      "vm1 wl0", // the links the plan looks at: the tap and its uplink
      "always", // a routed tap reads the sysctls even before it exists
      // the routes via itself, and the host routes of its addresses, to check them for a clash
      "tap 198.18.120.5 2001:db8::5",
      "net/ipv4/ip_forward",
      "net/ipv4/conf/default/proxy_arp",
      "net/ipv4/conf/vm1/proxy_arp",
      "net/ipv4/conf/wl0/proxy_arp",
    ]);
    expect(scriptBody(call.name)).not.toMatch(/vm1|qemu|wl0|198\.18\.120\.5/);
    // a bridged tap: the tap and its bridge, and only the routes via itself
    const bridged = observeCall(inputs({ name: "vm0", bridge: "br0" })).args;
    expect(bridged[10]).toBe("vm0 br0");
    expect(bridged[12]).toBe("tap");
  });

  it("lists only the links it names, each once, routes first (the real capture)", () => {
    const section = (f: string, name: string): string[] =>
      (fixture(f).split(`--pulumi-hypervisor-- ${name}\n`)[1] ?? "")
        .split("\n--pulumi-hypervisor-- ")[0]!
        .split("\n")
        .filter((l) => l !== "");
    const lines = section("tap-probe-vm0.txt", "links");
    expect(lines).toHaveLength(3);
    expect(
      lines.slice(1).map((l) => (JSON.parse(l) as { ifname: string }[]).map((x) => x.ifname)),
    ).toEqual([["vm0"], ["br0"]]);
    // a tap that is not routed lists only the routes via itself, which `ip` prints without a dev
    expect(section("tap-probe-vm0.txt", "routes-via")).toEqual(["vm0"]);
    const own = JSON.parse(lines[0] ?? "") as { dst: string; dev?: string }[];
    expect(own.map((r) => r.dst).sort()).toEqual(["fe80::/64", "ff00::/8"]);
    expect(own.filter((r) => r.dev !== undefined)).toEqual([]);
    // a routed tap lists every route: the one via br1 that a routed vm1 would clash with, too
    expect(section("tap-probe-vm1.txt", "routes-via")).toEqual([]);
    const every = JSON.parse(section("tap-probe-vm1.txt", "links")[0] ?? "") as { dst: string }[];
    expect(every.map((r) => r.dst)).toEqual(
      expect.arrayContaining(["198.18.120.5", "198.18.120.9"]),
    );
    // an absent tap is not asked for: its probe lists the routes and its bridge alone
    expect(Object.keys(parseTapDeviceState("vm9", fixture("tap-probe-vm9.txt")).links)).toEqual([]);
  });
});

describe("planTapDevice: create", () => {
  it("creates an absent bridged tap with its flags, mtu, bridge and link state, in order", () => {
    const d = inputs({
      name: "vm9",
      bridge: "br1",
      owner: 1000,
      group: "100",
      multiQueue: true,
      vnetHdr: true,
      mtu: 1400,
    });
    expect(planTapDevice(d, captured("vm9"))).toEqual([
      {
        summary: "create tap vm9 (user 1000 group 100 multi_queue vnet_hdr)",
        argv: [
          "ip",
          "tuntap",
          "add",
          "dev",
          "vm9",
          "mode",
          "tap",
          "user",
          "1000",
          "group",
          "100",
          "multi_queue",
          "vnet_hdr",
        ],
      },
      {
        summary: "mark vm9 as created by pulumi-hypervisor (ifalias)",
        argv: ["ip", "link", "set", "dev", "vm9", "alias", "pulumi-hypervisor"],
      },
      { summary: "set mtu 1400 on vm9", argv: ["ip", "link", "set", "dev", "vm9", "mtu", "1400"] },
      { summary: "attach vm9 to br1", argv: ["ip", "link", "set", "dev", "vm9", "master", "br1"] },
      { summary: "bring vm9 up", argv: ["ip", "link", "set", "dev", "vm9", "up"] },
    ]);
  });

  it("creates a routed tap: host routes, proxy ARP on the tap, claims on forwarding and the uplink", () => {
    const d = inputs({
      name: "vm9",
      routed: { addresses: ["198.18.121.5/32", "2001:DB8:0::9"], proxyArpInterface: "wl0" },
    });
    expect(planTapDevice(d, captured("vm9"))).toEqual([
      { summary: "create tap vm9", argv: ["ip", "tuntap", "add", "dev", "vm9", "mode", "tap"] },
      {
        summary: "mark vm9 as created by pulumi-hypervisor (ifalias)",
        argv: ["ip", "link", "set", "dev", "vm9", "alias", "pulumi-hypervisor"],
      },
      { summary: "bring vm9 up", argv: ["ip", "link", "set", "dev", "vm9", "up"] },
      {
        summary: "add host route 198.18.121.5/32 via vm9",
        argv: ["ip", "route", "replace", "198.18.121.5/32", "dev", "vm9", "proto", "static"],
      },
      {
        summary: "add host route 2001:db8::9/128 via vm9",
        argv: ["ip", "-6", "route", "replace", "2001:db8::9/128", "dev", "vm9", "proto", "static"],
      },
      setProxyArp("vm9", "1"),
      claim("net/ipv4/ip_forward", "tapdevice-vm9"),
      claim("net/ipv4/conf/wl0/proxy_arp", "tapdevice-vm9"),
    ]);
  });

  it("refuses names the host does not know, missing bridges and uplinks, and clashing routes", () => {
    expect(() =>
      planTapDevice(inputs({ name: "vm9", owner: "no-such-user" }), captured("vm9")),
    ).toThrow(/^owner "no-such-user" is not a user on the host$/);
    expect(() => planTapDevice(inputs({ name: "vm9", bridge: "br7" }), captured("vm9"))).toThrow(
      /^bridge "br7" does not exist on the host$/,
    );
    expect(() => planTapDevice(inputs({ name: "vm9", bridge: "wl0" }), captured("vm9"))).toThrow(
      /^bridge "wl0" is not a bridge \(kind veth\)$/,
    );
    expect(() =>
      planTapDevice(
        inputs({ name: "vm9", routed: { proxyArpInterface: "wlan0" } }),
        captured("vm9"),
      ),
    ).toThrow(/^routed\.proxyArpInterface "wlan0" does not exist on the host$/);
    // a missing link is named for previews (one the same update creates is no warning)
    expect(
      [
        inputs({ name: "vm9", bridge: "br7" }),
        inputs({ name: "vm9", routed: { proxyArpInterface: "wlan0" } }),
        inputs({ name: "vm9", bridge: "wl0" }),
        inputs({ name: "vm9", owner: "no-such-user" }),
      ].map((i) => missingLinkOf(() => planTapDevice(i, captured("vm9")))),
    ).toEqual(["br7", "wlan0", undefined, undefined]);
    expect(() =>
      planTapDevice(
        inputs({ name: "vm9", routed: { addresses: ["198.18.120.9"] } }),
        captured("vm9"),
      ),
    ).toThrow(
      /^routed\.addresses: 198\.18\.120\.9 is already routed via br1; remove that route or that address$/,
    );
  });

  it("refuses to manage an interface that is not a tap, and leaves it alone on delete", () => {
    expect(() => planTapDevice(inputs({ name: "tun0" }), captured("vm9", "tun0"))).toThrow(
      /^interface "tun0" exists and is not a tap \(a tun device in tun mode\); refusing to touch it$/,
    );
    expect(() => planTapDevice(inputs({ name: "br0" }), captured("vm9", "br0"))).toThrow(
      /^interface "br0" exists and is not a tap \(kind bridge\)/,
    );
    expect(planTapDevice(undefined, captured("vm9", "tun0"))).toEqual([]);
  });
});

describe("planTapDevice: existing taps", () => {
  it("is empty when the host already matches, vnet_hdr included whatever the last opener set", () => {
    expect(planTapDevice(inputs(vm0), captured("vm0"))).toEqual([]);
    expect(
      planTapDevice(
        inputs({ ...vm0, owner: 65534, group: "100", vnetHdr: false }),
        captured("vm0"),
      ),
    ).toEqual([]);
    expect(planTapDevice(inputs(vm1), captured("vm1"))).toEqual([]);
  });

  it("re-attaches live to another bridge and detaches without touching the tap", () => {
    expect(planTapDevice(inputs({ ...vm0, bridge: "br1" }), captured("vm0"))).toEqual([
      {
        summary: "move vm0 from br0 to br1",
        argv: ["ip", "link", "set", "dev", "vm0", "master", "br1"],
      },
    ]);
    expect(planTapDevice(inputs({ ...vm0, bridge: null }), captured("vm0"))).toEqual([
      { summary: "detach vm0 from br0", argv: ["ip", "link", "set", "dev", "vm0", "nomaster"] },
    ]);
  });

  it("adds and removes only its own host routes (proto static), live", () => {
    const d = inputs({
      ...vm1,
      routed: { addresses: ["198.18.120.5", "198.18.120.6"], proxyArpInterface: "wl0" },
    });
    expect(planTapDevice(d, captured("vm1"))).toEqual([
      {
        summary: "remove host route 2001:db8::5/128 via vm1",
        argv: ["ip", "-6", "route", "del", "2001:db8::5/128", "dev", "vm1", "proto", "static"],
      },
      {
        summary: "add host route 198.18.120.6/32 via vm1",
        argv: ["ip", "route", "replace", "198.18.120.6/32", "dev", "vm1", "proto", "static"],
      },
    ]);
  });

  it("turns a routed tap into a bridged one: routes, proxy ARP and claims go", () => {
    expect(
      planTapDevice(
        inputs({ name: "vm1", bridge: "br0", multiQueue: true, mtu: 9000 }),
        captured("vm1"),
      ),
    ).toEqual([
      { summary: "attach vm1 to br0", argv: ["ip", "link", "set", "dev", "vm1", "master", "br0"] },
      {
        summary: "remove host route 198.18.120.5/32 via vm1",
        argv: ["ip", "route", "del", "198.18.120.5/32", "dev", "vm1", "proto", "static"],
      },
      {
        summary: "remove host route 2001:db8::5/128 via vm1",
        argv: ["ip", "-6", "route", "del", "2001:db8::5/128", "dev", "vm1", "proto", "static"],
      },
      setProxyArp("vm1", "0"),
      release("net/ipv4/conf/wl0/proxy_arp", "tapdevice-vm1"),
      release("net/ipv4/ip_forward", "tapdevice-vm1"),
    ]);
  });

  it("re-claims a setting someone turned off", () => {
    const s = captured("vm1");
    s.sysctls["net/ipv4/ip_forward"] = { value: "0", claimed: true };
    expect(planTapDevice(inputs(vm1), s)).toEqual([claim("net/ipv4/ip_forward", "tapdevice-vm1")]);
  });

  it("recreates a tap whose owner or multi_queue differ, unless a process holds it", () => {
    expect(() => planTapDevice(inputs({ ...vm0, owner: 1000 }), captured("vm0"))).toThrow(
      /^vm0 must be recreated \(owner is 65534, wanted 1000\) but is in use by pid \d+ \(.*python3 -c .*\); stop that process first$/,
    );
    const idle = { ...captured("vm0"), holders: [] };
    expect(planTapDevice(inputs({ ...vm0, owner: 1000, group: null }), idle)).toEqual([
      {
        summary:
          "delete tap vm0 to recreate it (owner is 65534, wanted 1000; group is 100, wanted none)",
        script: { name: "resources/tap-device/tap-delete.sh", args: ["vm0"] },
      },
      {
        summary: "create tap vm0 (user 1000 vnet_hdr)",
        argv: ["ip", "tuntap", "add", "dev", "vm0", "mode", "tap", "user", "1000", "vnet_hdr"],
      },
      {
        summary: "mark vm0 as created by pulumi-hypervisor (ifalias)",
        argv: ["ip", "link", "set", "dev", "vm0", "alias", "pulumi-hypervisor"],
      },
      { summary: "attach vm0 to br0", argv: ["ip", "link", "set", "dev", "vm0", "master", "br0"] },
      { summary: "bring vm0 up", argv: ["ip", "link", "set", "dev", "vm0", "up"] },
    ]);
    expect(
      planTapDevice(inputs({ ...vm1, multiQueue: false }), captured("vm1"))
        .map((s) => s.summary)
        .slice(0, 2),
    ).toEqual(["delete tap vm1 to recreate it (multi_queue is on, wanted off)", "create tap vm1"]);
  });

  it("refuses a tap that is not persistent (it vanishes with its process)", () => {
    const s = captured("vm0");
    s.tap = { ...s.tap!, persist: false };
    expect(() => planTapDevice(inputs(vm0), s)).toThrow(
      /^vm0 exists but is not persistent: it belongs to pid \d+ \(.*python3/,
    );
  });
});

describe("planTapDevice: delete", () => {
  it("refuses to delete a tap a process holds, naming the process", () => {
    const s = captured("vm0");
    const h = s.holders![0]!;
    expect(() => planTapDevice(undefined, s)).toThrow(
      `vm0 is in use by pid ${h.pid} (${h.command}); stop that process before deleting the tap`,
    );
  });

  it("releases its claims while the tap exists, then deletes it with its own flags", () => {
    expect(planTapDevice(undefined, captured("vm1"))).toEqual([
      release("net/ipv4/conf/wl0/proxy_arp", "tapdevice-vm1"),
      release("net/ipv4/ip_forward", "tapdevice-vm1"),
      {
        summary: "delete tap vm1",
        script: { name: "resources/tap-device/tap-delete.sh", args: ["vm1", "multi_queue"] },
      },
    ]);
    expect(planTapDevice(undefined, { ...captured("vm0"), holders: [] })).toEqual([
      {
        summary: "delete tap vm0",
        script: { name: "resources/tap-device/tap-delete.sh", args: ["vm0"] },
      },
    ]);
  });

  it("is empty when the tap is gone and nothing is claimed", () => {
    expect(planTapDevice(undefined, captured("vm9"))).toEqual([]);
  });
});

describe("the module: observed inputs and outputs", () => {
  it("reports what the host has, in the program's own terms", () => {
    expect(tapDeviceModule.observedInputs(captured("vm0"), inputs(vm0))).toEqual({
      name: "vm0",
      bridge: "br0",
      routed: null,
      owner: "nobody",
      group: "users",
      multiQueue: false,
      vnetHdr: true,
      mtu: 1500,
      persistence: "auto",
      adopt: false,
    });
    expect(tapDeviceModule.observedInputs(captured("vm0"), inputs({ name: "vm0" }))).toMatchObject({
      owner: "65534",
      group: "100",
      vnetHdr: false,
    });
    expect(tapDeviceModule.observedInputs(captured("vm1"), inputs(vm1))).toEqual({
      name: "vm1",
      bridge: null,
      routed: { addresses: ["198.18.120.5", "2001:db8::5"], proxyArpInterface: "wl0" },
      owner: null,
      group: null,
      multiQueue: true,
      vnetHdr: false,
      mtu: 9000,
      persistence: "auto",
      adopt: false,
    });
    // a state without the inputs it was observed for cannot say how the persisted layer drifted
    expect(tapDeviceModule.outputs(captured("vm0"))).toEqual({
      macAddress: captured("vm0").tap?.macAddress,
      persistedBy: undefined,
      persistedDrift: undefined,
    });
    expect(tapDeviceModule.outputs({ ...captured("vm0"), inputs: inputs(vm0) })).toEqual({
      macAddress: captured("vm0").tap?.macAddress,
      persistedBy: "none",
      persistedDrift: undefined,
    });
    expect(tapDeviceModule.exists(captured("vm9"))).toBe(false);
  });
});

describe("TapDeviceInputs", () => {
  const reasons = (x: Record<string, unknown>) => {
    const r = TapDeviceInputs.safeParse(x);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  it("rejects bad input with the property named", () => {
    expect(
      reasons({ name: "tap0", bridge: "br0", routed: { addresses: ["198.18.120.5"] } }),
    ).toEqual([
      "routed: bridge and routed are mutually exclusive: a tap is either a bridge port or routed with host routes; set one of them",
    ]);
    expect(reasons({ name: "a234567890123456" })[0]).toMatch(/^name: must be 1 to 15 characters/);
    expect(
      reasons({ name: "tap0", routed: { addresses: ["198.18.120.5", "10.0.0.300"] } }),
    ).toEqual(['routed.addresses.1: "10.0.0.300" is not an IP address']);
    expect(reasons({ name: "tap0", routed: { addresses: ["198.18.120.0/24"] } })).toEqual([
      'routed.addresses.0: "198.18.120.0/24" is not a single address (each guest address gets a /32 or /128 host route)',
    ]);
    expect(
      reasons({ name: "tap0", routed: { addresses: ["198.18.120.5", "198.18.120.5/32"] } }),
    ).toEqual(['routed.addresses.1: address "198.18.120.5" is listed twice']);
    expect(reasons({ name: "tap0", routed: { proxyArpInterface: "tap0" } })).toEqual([
      "routed.proxyArpInterface: must name the uplink (e.g. the Wi-Fi interface), not the tap itself",
    ]);
    expect(reasons({ name: "tap0", routed: { proxyArpInterface: "wl0;reboot" } })[0]).toMatch(
      /^routed\.proxyArpInterface: must be 1 to 15/,
    );
    expect(reasons({ name: "tap0", bridge: "tap0" })).toEqual([
      "bridge: a tap cannot be attached to itself",
    ]);
    expect(reasons({ name: "tap0", owner: "qemu user" })).toEqual([
      'owner: "qemu user" is not a user name or a numeric id (0 to 4294967294)',
    ]);
    expect(reasons({ name: "tap0", group: -1 })).toEqual([
      "group: -1 is not a group name or a numeric id (0 to 4294967294)",
    ]);
    expect(reasons({ name: "tap0", mtu: 70000 })).toEqual([
      "mtu: must be at most 65521 (the largest a tap accepts)",
    ]);
    expect(reasons({ name: "tap0", vnetHdr: "yes" })[0]).toMatch(/^vnetHdr: /);
    expect(reasons({ name: "tap0", bogus: 1 })[0]).toMatch(/bogus/);
  });
  it("applies defaults and canonical forms", () => {
    expect(
      TapDeviceInputs.parse({
        name: "tap0",
        owner: 1000,
        group: "kvm",
        routed: { addresses: ["2001:DB8:0:0::5/128"] },
      }),
    ).toEqual({
      name: "tap0",
      bridge: null,
      routed: { addresses: ["2001:db8::5"] },
      owner: "1000",
      group: "kvm",
      multiQueue: false,
      vnetHdr: false,
      persistence: "auto",
      adopt: false,
    });
  });
});

describe("a tap the provider did not create", () => {
  const mark = {
    summary: "mark vm1 as created by pulumi-hypervisor (ifalias)",
    argv: ["ip", "link", "set", "dev", "vm1", "alias", "pulumi-hypervisor"],
  };

  it("reads the marker from ip -j's ifalias", () => {
    expect(capturedAsIs("vm1").tap?.ifalias).toBeUndefined();
    const text = JSON.stringify([
      { ifindex: 7, ifname: "vm1", flags: [], mtu: 1500, ifalias: "pulumi-hypervisor" },
    ]);
    expect(parseTapLinks(text)["vm1"]?.ifalias).toBe("pulumi-hypervisor");
  });

  it("is refused at create, naming import and adopt, before any step", () => {
    expect(() => planTapDevice(inputs(vm1), { ...capturedAsIs("vm1"), creating: true })).toThrow(
      'tap "vm1" already exists and was not created by pulumi-hypervisor (it has no ifalias, not "pulumi-hypervisor"); ' +
        "refusing to take it over, nothing was changed. To manage it, import it " +
        "(pulumi import hypervisor:index:TapDevice <resource name> vm1) or set adopt: true " +
        "(the provider then changes it to match, and destroy deletes it)",
    );
  });

  it("is taken over at create with adopt: true, and by an update, marked first", () => {
    const creating = { ...capturedAsIs("vm1"), creating: true };
    expect(planTapDevice(inputs({ ...vm1, adopt: true }), creating)).toEqual([mark]);
    expect(planTapDevice(inputs(vm1), capturedAsIs("vm1"))).toEqual([mark]);
  });

  it("of the provider's own, marked, is created over without refusal", () => {
    expect(planTapDevice(inputs(vm1), { ...captured("vm1"), creating: true })).toEqual([]);
  });

  it("is deleted by a destroy once in the stack, marked or not", () => {
    expect(planTapDevice(undefined, capturedAsIs("vm1"))).toEqual(
      planTapDevice(undefined, captured("vm1")),
    );
  });
});
