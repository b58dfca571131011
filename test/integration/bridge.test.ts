// Bridge on real lab hosts, through the dynamic-provider plugin driven as the engine drives it.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import {
  CheckFailedError,
  PluginError,
  type DynamicProviderPlugin,
  type Engine,
} from "../../lab/engine/engine";
import { spec, startEngine, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// Guest networks inside the lab hosts (first three octets of a /24).
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);
const NET_2 = labGuestNet(2);

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let h1: LabHost;
let h2: LabHost;

interface IpLink {
  ifindex: number;
  address?: string;
  ifname: string;
  mtu: number;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: { stp_state?: number } };
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
}

async function link(h: LabHost, name: string): Promise<IpLink | undefined> {
  const r = await h.exec(["ip", "-j", "-d", "addr", "show", "dev", name]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as IpLink[])[0];
}

const accepted = (h: LabHost): number =>
  readFileSync(h.sshdLogPath, "utf8")
    .split("\n")
    .filter((l) => l.includes("Accepted ")).length;

const globalAddrs = (l: IpLink | undefined): string[] =>
  (l?.addr_info ?? [])
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "itbridge", hosts: 2 }));
  [h1, h2] = lab.hosts as [LabHost, LabHost];
});

afterAll(() => stopLabWithEngine({ lab, plugin }));

describe("Bridge on a lab host", () => {
  it("creates a bridge with two addresses and STP on, verified independently with ip -j", async () => {
    const before = await h1.sshConnectionCount();
    const res = [
      await spec("Bridge", "br", {
        connection: h1.connection(),
        name: "br-test",
        addresses: [`${NET_0}.1/24`, "2001:db8:100::1/64"],
        stp: true,
        mtu: 1450,
        macAddress: "52:54:00:00:01:00",
      }),
    ];
    const { steps } = await engine.up(res);
    expect(steps.map((s) => s.op)).toEqual(["create"]);
    const l = await link(h1, "br-test");
    expect(l?.linkinfo?.info_kind).toBe("bridge");
    expect(l?.linkinfo?.info_data?.stp_state).not.toBe(0);
    expect(globalAddrs(l)).toEqual([`${NET_0}.1/24`, "2001:db8:100::1/64"]);
    const outs = engine.state.get("br")!.outputs;
    expect(outs["ifIndex"]).toBe(l?.ifindex);
    expect(outs["macAddress"]).toBe("52:54:00:00:01:00");
    expect(l?.mtu).toBe(1450);
    // one pooled SSH connection served the whole operation
    expect((await h1.sshConnectionCount()) - before).toBe(1);
    expect(await link(h2, "br-test")).toBeUndefined();
  });

  it("keeps its MAC when a port joins (unpinned, the kernel would take the port's)", async () => {
    // its own engine, so the other tests' bridge stays out of this one's up/destroy
    const own = await startEngine();
    const engine = own.engine;
    const brmac = await spec("Bridge", "brmac", { connection: h1.connection(), name: "br-mac" });
    await engine.up([brmac]);
    const mac = engine.state.get("brmac")!.outputs["macAddress"];
    await h1.exec(["ip", "link", "add", "vxa", "type", "veth", "peer", "name", "vxb"]);
    await h1.exec(["ip", "link", "set", "dev", "vxa", "master", "br-mac"]);
    expect((await link(h1, "br-mac"))?.address).toBe(mac);
    // a port the bridge did not enslave is neither drift nor detached by the next up
    expect((await engine.refresh()).steps.find((s) => s.name === "brmac")?.op).toBe("same");
    expect((await engine.up([brmac])).steps.map((s) => s.op)).toEqual(["same"]);
    expect((await link(h1, "vxa"))?.master).toBe("br-mac");
    await h1.exec(["ip", "link", "del", "dev", "vxa"]);
    await engine.destroy();
    await own.plugin.stop();
    expect(await link(h1, "br-mac")).toBeUndefined();
  });

  it("destroy leaves what it found: a port it brought up goes down, a bridge.conf it created goes", async () => {
    const own = await startEngine();
    await h1.exec(["ip", "link", "add", "vdn", "type", "veth", "peer", "name", "vdn-p"]);
    await h1.exec(["ip", "link", "add", "vup", "type", "veth", "peer", "name", "vup-p"]);
    await h1.exec(["ip", "link", "set", "dev", "vup", "up"]);
    await h1.exec(["rm", "-f", "/etc/qemu/bridge.conf"]);
    const flags = async (n: string): Promise<string[]> => {
      const r = await h1.exec(["ip", "-j", "link", "show", "dev", n]);
      return (JSON.parse(r.stdout) as Array<{ flags: string[] }>)[0]?.flags ?? [];
    };
    const conf = async (): Promise<string> =>
      (await h1.exec(["sh", "-c", "cat /etc/qemu/bridge.conf 2>/dev/null || echo absent"])).stdout;
    const br = await spec("Bridge", "brp", {
      connection: h1.connection(),
      name: "br-ports",
      ports: ["vdn", "vup"],
      allowQemuBridgeHelper: true,
    });
    await own.engine.up([br]);
    expect(await flags("vdn")).toContain("UP");
    expect(await conf()).toBe("# managed by pulumi-hypervisor: bridge br-ports\nallow br-ports\n");
    await own.engine.destroy();
    await own.plugin.stop();
    expect(await link(h1, "br-ports")).toBeUndefined();
    expect(await flags("vdn")).not.toContain("UP");
    expect(await flags("vup")).toContain("UP");
    expect(await conf()).toBe("absent\n");
    await h1.exec(["ip", "link", "del", "dev", "vdn"]);
    await h1.exec(["ip", "link", "del", "dev", "vup"]);
  });

  // br-test as the live update leaves it: both guest networks, STP on, MTU 1400.
  const updatedBrTest = () =>
    spec("Bridge", "br", {
      connection: h1.connection(),
      name: "br-test",
      addresses: [`${NET_0}.1/24`, `${NET_1}.1/24`],
      stp: true,
      mtu: 1400,
    });

  it("updates addresses and mtu live: the ifindex does not change", async () => {
    const ifIndex = (await link(h1, "br-test"))?.ifindex;
    const res = [await updatedBrTest()];
    const preview = await engine.preview(res);
    expect(preview.steps.map((s) => s.op)).toEqual(["update"]);
    const { steps } = await engine.up(res);
    expect(steps.map((s) => s.op)).toEqual(["update"]);
    const l = await link(h1, "br-test");
    expect(l?.ifindex).toBe(ifIndex);
    expect(l?.mtu).toBe(1400);
    expect(globalAddrs(l)).toEqual([`${NET_0}.1/24`, `${NET_1}.1/24`]);
  });

  it("refresh reports an mtu changed by hand, and the next up puts it back", async () => {
    await h1.exec(["ip", "link", "set", "dev", "br-test", "mtu", "1300"]);
    const { steps } = await engine.refresh();
    expect(steps).toEqual([expect.objectContaining({ op: "refresh-changed", name: "br" })]);
    expect(engine.state.get("br")!.outputs["mtu"]).toBe(1300);
    const res = [await updatedBrTest()];
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["update"]);
    expect((await link(h1, "br-test"))?.mtu).toBe(1400);
  });

  it("refresh after the bridge is deleted by hand finds it gone", async () => {
    await h1.exec(["ip", "link", "del", "dev", "br-test"]);
    const { steps } = await engine.refresh();
    expect(steps).toEqual([expect.objectContaining({ op: "refresh-gone", name: "br" })]);
    expect(engine.state.has("br")).toBe(false);
  });

  it("destroy deletes the bridge and its bridge.conf line, leaving other lines alone", async () => {
    await h1.exec([
      "sh",
      "-c",
      "mkdir -p /etc/qemu && printf 'allow virbr0\\n' > /etc/qemu/bridge.conf",
    ]);
    const res = [
      await spec("Bridge", "br", {
        connection: h1.connection(),
        name: "br-test",
        allowQemuBridgeHelper: true,
      }),
    ];
    await engine.up(res);
    expect((await h1.exec(["cat", "/etc/qemu/bridge.conf"])).stdout).toBe(
      "allow virbr0\n# managed by pulumi-hypervisor: bridge br-test\nallow br-test\n",
    );
    // the other lab host has its own /etc: it sees neither the bridge nor the file change
    expect(
      (await h2.exec(["sh", "-c", "cat /etc/qemu/bridge.conf 2>/dev/null || echo absent"])).stdout,
    ).toBe("absent\n");
    const { steps } = await engine.destroy();
    expect(steps.map((s) => s.op)).toEqual(["delete"]);
    expect(await link(h1, "br-test")).toBeUndefined();
    expect((await h1.exec(["cat", "/etc/qemu/bridge.conf"])).stdout).toBe("allow virbr0\n");
    // delete is idempotent: deleting what is already gone succeeds
    await plugin.delete(
      "br-test",
      "urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:Bridge::br",
      {
        connection: h1.connection(),
        name: "br-test",
        __provider: (await spec("Bridge", "x", {})).inputs["__provider"],
      },
    );
  });

  it("rejects bad input at check, naming the property, without connecting", async () => {
    const before = await h1.sshConnectionCount();
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ name: "a234567890123456" }, "name"],
      [{ name: "br0;reboot" }, "name"],
      [{ name: "br 0" }, "name"],
      [{ name: "br0", addresses: ["10.0.0.300/24"] }, "addresses[0]"],
      [{ name: "br0", macAddress: "52:54:00:12:34" }, "macAddress"],
      [{ name: "br0", mtu: -1 }, "mtu"],
    ];
    for (const [inputs, property] of bad) {
      const err = await engine
        .up([await spec("Bridge", "bad", { connection: h1.connection(), ...inputs })])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckFailedError);
      const failures = (err as CheckFailedError).failures["bad"] ?? [];
      expect(failures.map((f) => f.property)).toEqual([property]);
      expect(failures[0]?.reason).toMatch(new RegExp(`^${property.replace(/[[\]]/g, "\\$&")}: `));
    }
    expect(await h1.sshConnectionCount()).toBe(before);
    expect(engine.state.has("bad")).toBe(false);
  });

  it("refuses a host presenting a different key than the pinned one, and runs nothing", async () => {
    const before = await h1.exec(["ip", "-br", "link"]);
    const acceptedBefore = accepted(h1);
    const res = [
      await spec("Bridge", "wrongkey", {
        connection: { ...h1.connection(), hostKey: h2.hostKeyLine },
        name: "br-nokey",
      }),
    ];
    const err = await engine.up(res).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain("host key verification failed");
    expect((err as Error).message).toContain(h1.hostKeyFingerprint);
    expect((err as Error).message).toContain(h2.hostKeyFingerprint);
    expect((await h1.exec(["ip", "-br", "link"])).stdout).toBe(before.stdout);
    // the client gave up during key exchange: sshd never authenticated anyone
    expect(accepted(h1)).toBe(acceptedBefore);
  });

  it("works as a non-root user through sudo -n", async () => {
    const res = [
      await spec("Bridge", "sudo", {
        connection: { ...h2.connection("hvsudo"), sudo: true },
        name: "br-sudo",
        addresses: [`${NET_2}.1/24`],
      }),
    ];
    await engine.up(res);
    expect(globalAddrs(await link(h2, "br-sudo"))).toEqual([`${NET_2}.1/24`]);
    await engine.destroy();
    expect(await link(h2, "br-sudo")).toBeUndefined();
  });

  it("moves the NIC carrying the SSH session onto a bridge and back without losing the session", async () => {
    const mgmt = `${h2.address}/24`;
    const refused = [
      await spec("Bridge", "mgmt", {
        connection: h2.connection(),
        name: "br-mgmt",
        ports: ["mgmt0"],
      }),
    ];
    const err = await engine.up(refused).catch((e: unknown) => e);
    expect((err as Error).message).toContain('port "mgmt0" carries this SSH session');
    expect((await link(h2, "mgmt0"))?.master).toBeUndefined();
    await engine.destroy();

    const res = [
      await spec("Bridge", "mgmt", {
        connection: h2.connection(),
        name: "br-mgmt",
        ports: ["mgmt0"],
        addresses: [mgmt],
      }),
    ];
    await engine.up(res);
    expect((await link(h2, "mgmt0"))?.master).toBe("br-mgmt");
    expect(globalAddrs(await link(h2, "br-mgmt"))).toEqual([mgmt]);
    expect(globalAddrs(await link(h2, "mgmt0"))).toEqual([]);
    // the session (and new ones) still work: a no-change up observes over SSH
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["same"]);
    await engine.destroy();
    expect(await link(h2, "br-mgmt")).toBeUndefined();
    expect(globalAddrs(await link(h2, "mgmt0"))).toEqual([mgmt]);
  });

  it("pools: many operations in one plugin process open exactly one SSH connection", async () => {
    // a fresh plugin process, so no connection of an earlier test can be reused
    const fresh = await startEngine();
    const engine = fresh.engine;
    const before = await h1.sshConnectionCount();
    const res = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((i) =>
        spec("Bridge", `pool${i}`, {
          connection: h1.connection(),
          name: `br-pool${i}`,
          addresses: [`${labGuestNet(i)}.1/24`],
        }),
      ),
    );
    await engine.preview(res);
    await engine.up(res);
    await engine.refresh();
    await engine.up(res);
    await engine.destroy();
    expect((await h1.exec(["ip", "-br", "link", "show", "type", "bridge"])).stdout).toBe("");
    expect((await h1.sshConnectionCount()) - before).toBe(1);
    await fresh.plugin.stop();
  });

  it("never writes a connection secret to the plugin's log", () => {
    expect(plugin.stderr()).not.toContain("OPENSSH PRIVATE KEY");
    expect(plugin.stderr()).not.toContain(h1.privateKey.split("\n")[1]);
  });
});
