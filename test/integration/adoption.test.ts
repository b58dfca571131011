// Bridge and TapDevice never take over a link an admin made unless told to: create refuses it and
// changes nothing, `adopt: true` or `pulumi import` take it over (the provider marks the links it
// creates with ifalias "pulumi-hypervisor"), and destroy still deletes what the provider created.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import { PluginError, type DynamicProviderPlugin, type Engine } from "../../lab/engine/engine";
import { NativeEngine, secret } from "../../lab/engine/native-engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let native: NativeEngine | undefined;
let h: LabHost;

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "itadopt", hosts: 1 }));
  [h] = lab.hosts as [LabHost];
});

afterAll(async () => {
  await native?.stop();
  await stopLabWithEngine({ lab, plugin });
});

async function sh(argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The link as `ip -d -j addr show` prints it (every attribute, to compare before and after). */
async function linkJson(name: string): Promise<string | undefined> {
  const r = await h.exec(["ip", "-d", "-j", "addr", "show", "dev", name]);
  return r.code === 0 ? r.stdout : undefined;
}

interface IpLink {
  ifindex: number;
  flags: string[];
  mtu: number;
  address?: string;
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: { stp_state?: number; type?: string } };
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
}

/** What an admin would notice changed: the link's identity, state and global addresses (not timers). */
async function snapshot(name: string): Promise<unknown> {
  const text = await linkJson(name);
  if (text === undefined) return undefined;
  const l = (JSON.parse(text) as IpLink[])[0];
  return {
    ifindex: l?.ifindex,
    flags: l?.flags,
    mtu: l?.mtu,
    address: l?.address,
    master: l?.master,
    ifalias: l?.ifalias,
    kind: l?.linkinfo?.info_kind,
    stp: l?.linkinfo?.info_data?.stp_state,
    addresses: (l?.addr_info ?? [])
      .filter((a) => a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`),
  };
}

async function ifalias(name: string): Promise<string | undefined> {
  const text = await linkJson(name);
  if (text === undefined) return undefined;
  return (JSON.parse(text) as Array<{ ifalias?: string }>)[0]?.ifalias;
}

const bridge = (name: string, inputs: Record<string, unknown>) =>
  spec("Bridge", name, { connection: h.connection(), name, ...inputs });
const tap = (name: string, inputs: Record<string, unknown>) =>
  spec("TapDevice", name, { connection: h.connection(), name, ...inputs });

describe("a bridge an admin made", () => {
  it("is refused at create and left exactly as it was, its address kept", async () => {
    await sh(["ip", "link", "add", "name", "adm-br", "type", "bridge"]);
    await sh(["ip", "addr", "add", `${NET_0}.1/24`, "dev", "adm-br"]);
    await sh(["ip", "link", "set", "dev", "adm-br", "up"]);
    const before = await snapshot("adm-br");
    const err = await engine
      .up([await bridge("adm-br", { addresses: [`${NET_1}.1/24`] })])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain(
      'bridge "adm-br" already exists and was not created by pulumi-hypervisor (it has no ifalias, not "pulumi-hypervisor"); ' +
        "refusing to take it over, nothing was changed. To manage it, import it " +
        "(pulumi import hypervisor:index:Bridge <resource name> adm-br) or set adopt: true",
    );
    expect(engine.state.has("adm-br")).toBe(false);
    expect(await snapshot("adm-br")).toEqual(before);
    expect(before).toMatchObject({ addresses: [`${NET_0}.1/24`], ifalias: undefined });
  });

  it("is taken over with adopt: true, marked, refreshed without drift, and deleted by destroy", async () => {
    const { steps } = await engine.up([
      await bridge("adm-br", { addresses: [`${NET_1}.1/24`], adopt: true }),
    ]);
    expect(steps.map((s) => s.op)).toEqual(["create"]);
    expect(await ifalias("adm-br")).toBe("pulumi-hypervisor");
    expect(await linkJson("adm-br")).toContain(`"local":"${NET_1}.1","prefixlen":24`);
    expect(await linkJson("adm-br")).not.toContain(`"local":"${NET_0}.1"`);
    const refreshed = await engine.refresh();
    expect(refreshed.steps.map((s) => s.op)).toEqual(["same"]);
    await engine.destroy();
    expect(await linkJson("adm-br")).toBeUndefined();
  });

  it("a bridge the provider creates is marked, and destroy still deletes it", async () => {
    await engine.up([await bridge("own-br", { addresses: [`${NET_0}.1/24`] })]);
    expect(await ifalias("own-br")).toBe("pulumi-hypervisor");
    // a create over the provider's own (the stack lost it) is no takeover: it converges
    engine.state.delete("own-br");
    const again = await engine.up([await bridge("own-br", { addresses: [`${NET_0}.1/24`] })]);
    expect(again.steps.map((s) => s.op)).toEqual(["create"]);
    await engine.destroy();
    expect(await linkJson("own-br")).toBeUndefined();
  });
});

describe("a rename onto an admin's bridge", () => {
  it("keeps the old bridge: Delete checks the new name first and refuses before anything changes", async () => {
    await engine.up([await bridge("br", { name: "own-br2", addresses: [`${NET_0}.1/24`] })]);
    await sh(["ip", "link", "add", "name", "adm-br2", "type", "bridge"]);
    const before = await snapshot("adm-br2");
    const err = await engine
      .up([await bridge("br", { name: "adm-br2", addresses: [`${NET_0}.1/24`] })])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain(
      'bridge "own-br2" on root@' +
        `${h.address}:22: not deleted, because its replacement "adm-br2" would fail: ` +
        'bridge "adm-br2" already exists and was not created by pulumi-hypervisor',
    );
    expect(await ifalias("own-br2")).toBe("pulumi-hypervisor");
    expect(await snapshot("adm-br2")).toEqual(before);
    await engine.destroy();
    expect(await linkJson("own-br2")).toBeUndefined();
    await sh(["ip", "link", "del", "dev", "adm-br2"]);
  });
});

describe("a tap an admin made", () => {
  it("is refused at create and left exactly as it was", async () => {
    await sh(["ip", "tuntap", "add", "dev", "adm-tap", "mode", "tap"]);
    await sh(["ip", "link", "set", "dev", "adm-tap", "mtu", "1400"]);
    const before = await snapshot("adm-tap");
    const err = await engine.up([await tap("adm-tap", {})]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain(
      'tap "adm-tap" already exists and was not created by pulumi-hypervisor',
    );
    expect(await snapshot("adm-tap")).toEqual(before);
    expect(before).toMatchObject({ mtu: 1400, ifalias: undefined });
  });

  it("is taken over with adopt: true and deleted by destroy; the provider's own is marked", async () => {
    await engine.up([await tap("adm-tap", { adopt: true }), await tap("own-tap", {})]);
    expect(await ifalias("adm-tap")).toBe("pulumi-hypervisor");
    expect(await ifalias("own-tap")).toBe("pulumi-hypervisor");
    expect((await engine.refresh()).steps.map((s) => s.op)).toEqual(["same", "same"]);
    await engine.destroy();
    expect(await linkJson("adm-tap")).toBeUndefined();
    expect(await linkJson("own-tap")).toBeUndefined();
  });
});

describe("pulumi import (native plugin)", () => {
  it("imports an admin's bridge and tap unchanged; the next update marks them", async () => {
    await sh(["ip", "link", "add", "name", "imp-br", "type", "bridge"]);
    await sh(["ip", "addr", "add", `${NET_0}.1/24`, "dev", "imp-br"]);
    await sh(["ip", "tuntap", "add", "dev", "imp-tap", "mode", "tap"]);
    const before = [await snapshot("imp-br"), await snapshot("imp-tap")];
    native = new NativeEngine();
    await native.provider("hv", { connection: secret(h.connection()) });
    // a preview of a create over it warns, with the refusal, and plans no steps
    const preview = await native.preview([
      { type: "hypervisor:index:Bridge", name: "new", provider: "hv", inputs: { name: "imp-br" } },
    ]);
    expect(preview.steps.map((s) => [s.op, s.plannedSteps])).toEqual([["create", undefined]]);
    expect(native.logs()).toContain(
      'preview without steps: bridge "imp-br" already exists and was not created by pulumi-hypervisor',
    );
    const br = await native.import("hypervisor:index:Bridge", "br", "imp-br", "hv");
    const tp = await native.import("hypervisor:index:TapDevice", "tp", "imp-tap", "hv");
    expect([await snapshot("imp-br"), await snapshot("imp-tap")]).toEqual(before);
    expect(br.inputs).toMatchObject({ name: "imp-br", addresses: [`${NET_0}.1/24`], adopt: false });
    const specs = (mtu: number | undefined) => [
      { type: "hypervisor:index:Bridge", name: "br", provider: "hv", inputs: br.inputs },
      {
        type: "hypervisor:index:TapDevice",
        name: "tp",
        provider: "hv",
        inputs: { ...tp.inputs, ...(mtu !== undefined ? { mtu } : {}) },
      },
    ];
    expect((await native.preview(specs(undefined))).steps.map((s) => s.op)).toEqual([
      "same",
      "same",
    ]);
    await native.up([
      { ...specs(undefined)[0]!, inputs: { ...br.inputs, stp: true } },
      specs(1400)[1]!,
    ]);
    expect(await ifalias("imp-br")).toBe("pulumi-hypervisor");
    expect(await ifalias("imp-tap")).toBe("pulumi-hypervisor");
    await native.destroy();
    expect(await linkJson("imp-br")).toBeUndefined();
    expect(await linkJson("imp-tap")).toBeUndefined();
  });
});
