// The native plugin (the built provider/bin/pulumi-resource-hypervisor) over the engine protocol,
// without a lab host: unknowns in every position a preview sends them, warnings through the
// engine's Log service, and configuration the engine does not know yet. Hosts are unreachable
// loopback ports, so any attempt to connect would show as an error or a warning.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { FakeEngine } from "../../lab/engine/fake-engine";
import { NativeEngine, NativeProviderPlugin, UNKNOWN, urnOf } from "../../lab/engine/native-engine";

const BRIDGE = "hypervisor:index:Bridge";
const TAP = "hypervisor:index:TapDevice";
// Nothing listens on port 1 of loopback: a dial fails at once.
const nowhere = { host: "127.0.0.1", port: 1, dialErrorLimit: 1, perDialTimeout: 1 };

const started: Array<{ stop(): unknown }> = [];
afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});

async function plugin(config: Record<string, unknown>): Promise<NativeProviderPlugin> {
  const p = await NativeProviderPlugin.start();
  started.push(p);
  await p.handshake();
  await p.configure(config);
  return p;
}

/** A plugin given the address of an engine's Log service (which records what it gets), configured
 * for a host nothing listens on. */
async function pluginWithEngine(): Promise<{ fake: FakeEngine; p: NativeProviderPlugin }> {
  const fake = await FakeEngine.start();
  started.push(fake);
  const p = await NativeProviderPlugin.start({ engineAddress: fake.address });
  started.push(p);
  await p.configure({ connection: nowhere });
  return { fake, p };
}

describe("warnings reach the engine's Log service", () => {
  it("a preview against an unreachable host warns through Log, naming the resource", async () => {
    const engine = new NativeEngine();
    started.push(engine);
    await engine.provider("default", { connection: nowhere });
    const r = await engine.preview([{ type: BRIDGE, name: "br", inputs: { name: "hvu-br0" } }]);
    expect(r.failures).toEqual({});
    const warnings = (await engine.engineLog()).filter((m) => m.severity === "warning");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.urn).toBe(urnOf(BRIDGE, "br"));
    expect(warnings[0]!.message).toMatch(
      /^bridge "hvu-br0" on root@127\.0\.0\.1:1: preview without steps: /,
    );
  });
  it("a plugin started with the engine's address sends to that engine", async () => {
    const { fake, p } = await pluginWithEngine();
    const urn = urnOf(TAP, "t");
    await p.create(urn, { name: "hvu-tap0" }, { preview: true });
    expect(fake.of("warning").map((m) => m.urn)).toEqual([urn]);
  });
  it("calls at once, as the engine sends them, each warn under their own resource", async () => {
    const { fake, p } = await pluginWithEngine();
    const taps = [0, 1, 2, 3, 4, 5].map((i) => ({ urn: urnOf(TAP, `t${i}`), name: `hvu-tap${i}` }));
    await Promise.all(taps.map((t) => p.create(t.urn, { name: t.name }, { preview: true })));
    // each message names its tap; the URN it came with must be that tap's
    const got = fake
      .of("warning")
      .map((m) => [m.urn, /tap device "(hvu-tap\d)"/.exec(m.message)?.[1]]);
    expect(got).toHaveLength(taps.length);
    expect(got.sort()).toEqual(taps.map((t) => [t.urn, t.name]).sort());
  });
});

describe("unknowns in a preview (native plugin)", () => {
  it("Check: an unknown is no failure; a known bad value beside it is", async () => {
    const p = await plugin({ connection: nowhere });
    const urn = urnOf(BRIDGE, "b");
    expect((await p.check(urn, {}, { name: UNKNOWN, mtu: UNKNOWN })).failures).toEqual([]);
    expect((await p.check(urn, {}, { name: "hvu-br0", connection: UNKNOWN })).failures).toEqual([]);
    const bad = await p.check(urn, {}, { name: UNKNOWN, mtu: -5 });
    expect(bad.failures.map((f) => f.property)).toEqual(["mtu"]);
    const tap = await p.check(urnOf(TAP, "t"), {}, { name: UNKNOWN, bridge: UNKNOWN });
    expect(tap.failures).toEqual([]);
  });
  it("Diff: an unknown identity replaces, an unknown live input updates, both with detail", async () => {
    const p = await plugin({ connection: nowhere });
    const urn = urnOf(BRIDGE, "b");
    const olds = { name: "hvu-br0", addresses: [], stp: false, ifIndex: 3 };
    const byName = await p.diff("hvu-br0", urn, olds, { name: UNKNOWN }, { name: "hvu-br0" });
    expect(byName).toMatchObject({
      changes: "some",
      replaces: ["name"],
      detailedDiff: { name: "UPDATE_REPLACE" },
    });
    const byMtu = await p.diff("hvu-br0", urn, olds, { name: "hvu-br0", mtu: UNKNOWN }, {});
    expect(byMtu).toMatchObject({ changes: "some", replaces: [], detailedDiff: { mtu: "ADD" } });
    const byHost = await p.diff(
      "hvu-br0",
      urn,
      olds,
      { name: "hvu-br0", connection: { ...nowhere, host: UNKNOWN } },
      {},
    );
    expect(byHost).toMatchObject({ changes: "some", replaces: ["connection"] });
  });
  it("preview Create/Update with unknowns answer unknown outputs without connecting", async () => {
    const engine = new NativeEngine();
    started.push(engine);
    await engine.provider("default", { connection: nowhere });
    const p = engine.plugin();
    const urn = urnOf(BRIDGE, "b");
    const c = await p.create(urn, { name: "hvu-br0", mtu: UNKNOWN }, { preview: true });
    expect(c.properties["macAddress"]).toBe(UNKNOWN);
    const u = await p.update(
      "hvu-br0",
      urn,
      { name: "hvu-br0" },
      { name: "hvu-br0", connection: UNKNOWN },
      {},
      { preview: true },
    );
    expect(u.properties["ifIndex"]).toBe(UNKNOWN);
    expect(await engine.engineLog()).toEqual([]);
  });
});

describe("provider configuration with unknowns", () => {
  it("CheckConfig: a whole unknown connection (a generated SDK's JSON string) and one unknown field pass", async () => {
    const p = await NativeProviderPlugin.start();
    started.push(p);
    const whole = await p.checkConfig({}, { connection: UNKNOWN });
    expect(whole.failures).toEqual([]);
    const field = await p.checkConfig({}, { connection: { ...nowhere, host: UNKNOWN } });
    expect(field.failures).toEqual([]);
    const flat = await p.checkConfig({}, { host: UNKNOWN, port: "22", password: UNKNOWN });
    expect(flat.failures).toEqual([]);
    const badBeside = await p.checkConfig({}, { host: UNKNOWN, port: "x" });
    expect(badBeside.failures.map((f) => f.property)).toEqual(["port"]);
  });
  it("DiffConfig: an unknown host replaces, an unknown credential is an update", async () => {
    const p = await NativeProviderPlugin.start();
    started.push(p);
    const olds = { connection: { ...nowhere, password: "a" } };
    const host = await p.diffConfig(olds, { connection: { ...nowhere, host: UNKNOWN } }, olds);
    expect(host).toMatchObject({ changes: "some", replaces: ["connection"] });
    const whole = await p.diffConfig(olds, { connection: UNKNOWN }, olds);
    expect(whole).toMatchObject({ changes: "some", replaces: ["connection"] });
    const cred = await p.diffConfig(olds, { connection: { ...nowhere, password: UNKNOWN } }, olds);
    expect(cred).toMatchObject({ changes: "some", replaces: [] });
  });
  it("Configure with unknowns sent anyway: previews answer unknown outputs, nothing fails", async () => {
    const p = await NativeProviderPlugin.start();
    started.push(p);
    // The engine would not send this Configure; a plugin must still not fail on it.
    await p.configure({});
    await (
      p as unknown as {
        configureProvider(a: string, b: string, c: object, d: object): Promise<void>;
      }
    ).configureProvider("hypervisor", "default", { connection: UNKNOWN }, {});
    const urn = urnOf(BRIDGE, "b");
    expect((await p.check(urn, {}, { name: "hvu-br0" })).failures).toEqual([]);
    const c = await p.create(urn, { name: "hvu-br0" }, { preview: true });
    expect(c.properties["macAddress"]).toBe(UNKNOWN);
    await expect(p.create(urn, { name: "hvu-br0" })).rejects.toThrow(/connection is not known yet/);
  });
  it("the driver, like the engine, answers for a provider whose configuration is unknown", async () => {
    const engine = new NativeEngine();
    started.push(engine);
    await engine.provider("default", { connection: UNKNOWN });
    const r = await engine.preview([{ type: BRIDGE, name: "b", inputs: { name: "hvu-br0" } }]);
    expect(r).toMatchObject({ failures: {}, steps: [{ op: "create", name: "b", properties: {} }] });
  });
});

/** A TCP listener on loopback that accepts and never says a word: an SSH dial to it hangs. */
async function silentHost(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe("Cancel and customTimeouts (native plugin)", () => {
  it("Cancel stops a create that is waiting on its host", async () => {
    const silent = await silentHost();
    started.push(silent);
    const p = await plugin({
      connection: { host: "127.0.0.1", port: silent.port, perDialTimeout: 120 },
    });
    const t0 = Date.now();
    const creating = p.create(urnOf(BRIDGE, "b"), { name: "hvu-br0" }).then(
      () => new Error("the create succeeded"),
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    await p.cancel();
    expect(await creating).toMatchObject({
      message: expect.stringMatching(/cancelled by the engine/),
    });
    expect(Date.now() - t0).toBeLessThan(10_000);
    // Later operations fail at once too: the engine is shutting the plugin down.
    await expect(p.delete("hvu-br0", urnOf(BRIDGE, "b"), { name: "hvu-br0" })).rejects.toThrow(
      /cancelled by the engine/,
    );
  });
  it("customTimeouts.create (the request's timeout) ends a create that takes longer", async () => {
    const silent = await silentHost();
    started.push(silent);
    const engine = new NativeEngine();
    started.push(engine);
    await engine.provider("default", {
      connection: { host: "127.0.0.1", port: silent.port, perDialTimeout: 120 },
    });
    const t0 = Date.now();
    await expect(
      engine.up([
        { type: BRIDGE, name: "b", inputs: { name: "hvu-br0" }, customTimeouts: { create: 1 } },
      ]),
    ).rejects.toThrow(/timed out after 1 s \(customTimeouts\)/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
