// A guest on a bridge of a laptop-like host, end to end on a lab host with a WAN: a bridge with a static address, dnsmasq giving
// the guest a fixed address by MAC, and NAT (masquerade + a port forward) out of the uplink. The
// "guest" is a DHCP client namespace on the bridge, as a VM's virtio NIC would be.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost, type LabWan } from "../../lab";
import { connectionSeenByServer } from "../support/connection-probe";
import { createDhcpClient, type DhcpClient } from "../support/dhcp-client";
import type { DynamicProviderPlugin, Engine, ResourceSpec } from "../../lab/engine/engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// The guest network inside the lab host (first three octets of a /24).
const NET_0 = labGuestNet(0);

let lab: Lab;
let h: LabHost;
let wan: LabWan;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let guest: DhcpClient | undefined;
let ipForwardBefore = "";

const BRIDGE = "qbr0";
const GUEST = { mac: "52:54:00:45:00:10", ip: `${NET_0}.10`, hostname: "windows" };
const RDP = {
  protocol: "tcp",
  hostPort: 3389,
  destination: GUEST.ip,
  destinationPort: 3389,
  inInterface: "wan0",
};

async function program(): Promise<ResourceSpec[]> {
  const connection = h.connection();
  return [
    await spec("Bridge", "qbr", { connection, name: BRIDGE, addresses: [`${NET_0}.1/24`] }),
    await spec(
      "DnsmasqInstance",
      "dhcp",
      {
        connection,
        name: BRIDGE,
        interface: BRIDGE,
        subnet: `${NET_0}.0/24`,
        dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.150` },
        staticLeases: [GUEST],
        router: `${NET_0}.1`,
      },
      ["qbr"],
    ),
    await spec(
      "NatRule",
      "nat",
      {
        connection,
        name: BRIDGE,
        sourceCidr: `${NET_0}.0/24`,
        outInterface: "wan0",
        masquerade: true,
        forward: true,
        portForwards: [RDP],
      },
      ["qbr"],
    ),
  ];
}

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "itguestnat", hosts: 1, wan: true }));
  h = lab.hosts[0] as LabHost;
  wan = lab.wan!;
  ipForwardBefore = (await h.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim();
});

afterAll(async () => {
  await guest?.remove().catch(() => undefined);
  await stopLabWithEngine({ lab, plugin });
});

describe("a bridged guest with a static lease and NAT", () => {
  it("gives the guest its static address and gateway, and NATs it both ways", async () => {
    const { steps } = await engine.up(await program());
    expect(steps.map((s) => `${s.op} ${s.name}`)).toEqual([
      "create qbr",
      "create dhcp",
      "create nat",
    ]);

    guest = await createDhcpClient(h, { name: "win", bridge: BRIDGE, mac: GUEST.mac });
    const lease = await guest.obtain();
    expect(lease.ip).toBe(GUEST.ip);
    expect(lease.router).toEqual([`${NET_0}.1`]);
    const routes = JSON.parse(
      (await guest.exec(["ip", "-j", "route", "show", "default"])).stdout,
    ) as Array<{ gateway?: string; dev?: string }>;
    expect(routes).toEqual([expect.objectContaining({ gateway: `${NET_0}.1`, dev: "eth0" })]);

    // out: the WAN sees the host's uplink address as the source
    const out = await connectionSeenByServer(
      (a) => wan.exec(a, { timeoutMs: 25_000 }),
      (a) => guest!.exec(a),
      { address: wan.address, port: 7010 },
    );
    expect(out.peer).toBe(h.wanAddress);

    // in: the WAN reaches the guest's service through the host's uplink address
    const rdp = await connectionSeenByServer(
      (a) => guest!.exec(a, { timeoutMs: 25_000 }),
      (a) => wan.exec(a),
      { address: h.wanAddress ?? "", port: 3389 },
    );
    expect(rdp.local).toBe(GUEST.ip);

    // a second up finds everything in place
    expect((await engine.up(await program())).steps.map((s) => s.op)).toEqual([
      "same",
      "same",
      "same",
    ]);
  });

  it("destroys all three and leaves ip_forward as it found it", async () => {
    const { steps } = await engine.destroy();
    expect(steps.map((s) => `${s.op} ${s.name}`).sort()).toEqual([
      "delete dhcp",
      "delete nat",
      "delete qbr",
    ]);
    expect((await h.exec(["nft", "list", "tables"])).stdout).not.toContain("pulumi_hv_");
    expect(ipForwardBefore).toBe("0");
    expect((await h.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe(
      ipForwardBefore,
    );
    expect((await h.exec(["ip", "link", "show", "dev", BRIDGE])).code).not.toBe(0);
  });
});
