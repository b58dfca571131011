// Guest networking with running QEMU guests, end to end on real lab hosts: a bridged guest with a
// static lease and NAT, two guests on taps of one private bridge, and a routed guest behind proxy
// ARP. Bridge, TapDevice, DnsmasqInstance, NatRule and QemuGuest go through the dynamic-provider
// plugin; the tiny busybox guest (TCG) checks its own reachability and reports on its serial console.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import type { DynamicProviderPlugin, Engine, ResourceSpec } from "../../lab/engine/engine";
import {
  buildGuestImage,
  guestKernelArgs,
  parseGuestLog,
  type GuestImage,
  type GuestReport,
} from "../support/guest-image";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// Guest networks inside the lab hosts (first three octets of a /24): the bridged guest's and the
// private bridge's. The routed guest takes an address on its host's uplink network instead.
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);

const LAB = "itguestnet";

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let image: GuestImage;

beforeAll(async () => {
  image = await buildGuestImage();
  ({ lab, plugin, engine } = await startLabWithEngine({ name: LAB, hosts: 3, wan: true }));
});

afterAll(() => stopLabWithEngine({ lab, plugin }));

function hostAt(i: number): LabHost {
  const h = lab.hosts[i];
  if (!h) throw new Error(`no lab host ${i}`);
  return h;
}

async function sh(host: LabHost, argv: string[]): Promise<string> {
  const r = await host.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const res = (
  host: LabHost,
  type: string,
  name: string,
  inputs: Record<string, unknown>,
  dependsOn?: string[],
): Promise<ResourceSpec> =>
  spec(type, name, { connection: host.connection(), name, ...inputs }, dependsOn);

const tinyGuest = (
  kernelArgs: string,
  nics: Record<string, unknown>[],
): Record<string, unknown> => ({
  memoryMiB: 160,
  accel: "tcg",
  kernel: image.kernel,
  initrd: image.initrd,
  kernelArgs,
  nics,
  shutdownTimeoutSeconds: 5,
});

/** Waits until the guest's report satisfies `done` (it checks its pings for up to 30 s itself). */
async function waitForReport(
  host: LabHost,
  name: string,
  done: (r: GuestReport) => boolean,
  timeoutMs = 90_000,
): Promise<GuestReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await host.exec(["cat", `/var/log/pulumi-hypervisor/qemu/${name}.log`]);
    const report = parseGuestLog(r.code === 0 ? r.stdout : "");
    if (done(report)) return report;
    if (Date.now() > deadline)
      throw new Error(
        `guest ${name} on ${host.name}: no complete report in ${timeoutMs} ms; serial log:\n${r.stdout}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const pinged =
  (targets: string[]) =>
  (r: GuestReport): boolean =>
    targets.every((t) => r.pings[t] !== undefined);

describe("guest networking with running QEMU guests", () => {
  it("a bridged guest: bridge, dnsmasq static lease, NAT to the WAN, guest on the bridge through the helper", async ({
    annotate,
  }) => {
    const h = hostAt(0);
    const mac = "52:54:00:52:00:20";
    const gw = `${NET_0}.1`;
    const leaseIp = `${NET_0}.20`;
    const specs = [
      await res(h, "Bridge", "qbr0", { addresses: [`${gw}/24`], allowQemuBridgeHelper: true }),
      await res(
        h,
        "DnsmasqInstance",
        "guests",
        {
          interface: "qbr0",
          subnet: `${NET_0}.0/24`,
          dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.150`, leaseTime: "1h" },
          staticLeases: [{ mac, ip: leaseIp, hostname: "win" }],
        },
        ["qbr0"],
      ),
      await res(
        h,
        "NatRule",
        "guestnat",
        { sourceCidr: `${NET_0}.0/24`, outInterface: "wan0", masquerade: true, forward: true },
        ["qbr0"],
      ),
      await res(
        h,
        "QemuGuest",
        "win",
        tinyGuest(guestKernelArgs({ hostname: "win", ping: [lab.wan!.address, gw] }), [
          { mac, bridge: "qbr0" },
        ]),
        ["qbr0", "guests", "guestnat"],
      ),
    ];
    const t0 = Date.now();
    await engine.up(specs);
    const report = await waitForReport(h, "win", pinged([lab.wan!.address, gw]));
    await annotate(`up to lease and WAN ping: ${Date.now() - t0} ms`);
    expect(report.lease).toMatch(
      new RegExp(`^ip=${leaseIp.replace(/\./g, "\\.")}/24 router=${gw.replace(/\./g, "\\.")} `),
    );
    expect(report.networkReady).toBe(`${leaseIp}/24`);
    // Through the NatRule: the WAN has no route to the guest network, so only masquerade gets replies back.
    expect(report.pings).toEqual({ [lab.wan!.address]: "ok", [gw]: "ok" });

    // The host reads the lease from the DnsmasqInstance's live `leases` output.
    await engine.refresh();
    const leases = engine.state.get("guests")?.outputs["leases"] as Array<{
      mac: string;
      ip: string;
      hostname?: string;
    }>;
    expect(leases.map((l) => ({ mac: l.mac, ip: l.ip, hostname: l.hostname }))).toEqual([
      { mac, ip: leaseIp, hostname: "win" },
    ]);
    // The guest's service is reachable from the lab host.
    expect(await sh(h, ["busybox", "wget", "-q", "-O", "-", `http://${leaseIp}/`])).toBe(
      "hv-guest win\n",
    );

    await engine.destroy();
    expect((await h.exec(["ip", "link", "show", "qbr0"])).code).not.toBe(0);
    expect((await h.exec(["test", "-e", "/run/pulumi-hypervisor/qemu/win"])).code).not.toBe(0);
  });

  it("two guests with distinct MACs on taps of one private bridge reach each other", async ({
    annotate,
  }) => {
    const h = hostAt(1);
    const a = `${NET_1}.10`;
    const b = `${NET_1}.11`;
    const specs = [
      await res(h, "Bridge", "qbr4", {}),
      await res(h, "TapDevice", "tap0", { bridge: "qbr4" }, ["qbr4"]),
      await res(h, "TapDevice", "tap1", { bridge: "qbr4" }, ["qbr4"]),
      await res(
        h,
        "QemuGuest",
        "vm-a",
        tinyGuest(guestKernelArgs({ address: `${a}/24`, hostname: "vm-a", ping: [b] }), [
          { mac: "52:54:00:53:00:10", tap: "tap0" },
        ]),
        ["tap0"],
      ),
      await res(
        h,
        "QemuGuest",
        "vm-b",
        tinyGuest(guestKernelArgs({ address: `${b}/24`, hostname: "vm-b", ping: [a] }), [
          { mac: "52:54:00:53:00:11", tap: "tap1" },
        ]),
        ["tap1"],
      ),
    ];
    const t0 = Date.now();
    await engine.up(specs);
    const [ra, rb] = await Promise.all([
      waitForReport(h, "vm-a", pinged([b])),
      waitForReport(h, "vm-b", pinged([a])),
    ]);
    await annotate(`up to both guests pinging each other: ${Date.now() - t0} ms`);
    expect(ra.pings).toEqual({ [b]: "ok" });
    expect(rb.pings).toEqual({ [a]: "ok" });
    // The bridge has no address: the host itself is not on this network.
    expect((await h.exec(["busybox", "ping", "-c", "1", "-W", "1", a])).code).not.toBe(0);
    await engine.destroy();
    expect((await h.exec(["ip", "link", "show", "tap0"])).code).not.toBe(0);
  });

  it("a routed guest: a tap with proxy ARP; the guest reaches the host and the WAN, the WAN reaches the guest", async ({
    annotate,
  }) => {
    const h = hostAt(2);
    const uplink = h.uplink ?? "wan0";
    const hostUplinkAddress = h.wanAddress ?? "";
    const guestIp = `${hostUplinkAddress.split(".").slice(0, 3).join(".")}.50`;
    const specs = [
      await res(h, "TapDevice", "tapr", {
        routed: { addresses: [guestIp], proxyArpInterface: uplink },
      }),
      await res(
        h,
        "QemuGuest",
        "routed",
        tinyGuest(
          guestKernelArgs({
            address: `${guestIp}/24`,
            gateway: hostUplinkAddress,
            hostname: "routed",
            ping: [hostUplinkAddress, lab.wan!.address],
          }),
          [{ mac: "52:54:00:54:00:10", tap: "tapr" }],
        ),
        ["tapr"],
      ),
    ];
    const t0 = Date.now();
    await engine.up(specs);
    const report = await waitForReport(h, "routed", pinged([hostUplinkAddress, lab.wan!.address]));
    await annotate(`up to WAN ping: ${Date.now() - t0} ms`);
    expect(report.pings).toEqual({ [hostUplinkAddress]: "ok", [lab.wan!.address]: "ok" });
    // The host answers ARP for the guest on the uplink, so the WAN reaches the guest directly.
    expect((await lab.wan!.exec(["busybox", "ping", "-c", "1", "-W", "2", guestIp])).code).toBe(0);
    expect(await sh(h, ["busybox", "wget", "-q", "-O", "-", `http://${guestIp}/`])).toBe(
      "hv-guest routed\n",
    );
    await engine.destroy();
    expect((await h.exec(["ip", "route", "show", guestIp])).stdout.trim()).toBe("");
  });
});
