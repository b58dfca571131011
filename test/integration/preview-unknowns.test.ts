// A preview whose inputs other resources compute: the engine sends them as its unknown sentinel
// in Check, Diff and (native plugin) the preview Create/Update. Both front-ends must plan from them
// (update, replace or create) without a check failure, and neither may connect to the host: the
// lab host's sshd log proves it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN, type Engine } from "../../lab/engine/engine";
import { NativeEngine, secret, urnOf } from "../../lab/engine/native-engine";
import { startLab, type Lab, type LabHost } from "../../lab";
import { spec, startEngine } from "../../lab/harness";

const BRIDGE = "hypervisor:index:Bridge";
const TAP = "hypervisor:index:TapDevice";

let lab: Lab;
let h: LabHost;

beforeAll(async () => {
  lab = await startLab({ name: "itunknown", hosts: 1 });
  h = lab.hosts[0]!;
});

afterAll(async () => {
  await lab?.stop();
});

describe("dynamic classes: a preview with unknown inputs", () => {
  let engine: Engine;
  let stopPlugin: () => Promise<void>;

  beforeAll(async () => {
    const started = await startEngine();
    engine = started.engine;
    stopPlugin = () => started.plugin.stop();
    await engine.up([await spec("Bridge", "b", { connection: h.connection(), name: "hvk-b0" })]);
  });

  afterAll(async () => {
    await engine?.destroy();
    await stopPlugin?.();
  });

  it("plans update, replace and create from unknowns without connecting", async () => {
    const before = await h.sshConnectionCount();
    const c = h.connection();
    const bridge = (inputs: Record<string, unknown>) =>
      spec("Bridge", "b", { connection: c, name: "hvk-b0", ...inputs });

    const live = await engine.preview([await bridge({ mtu: UNKNOWN, addresses: [UNKNOWN] })]);
    expect(live).toEqual({ failures: {}, steps: [expect.objectContaining({ op: "update" })] });

    const renamed = await engine.preview([await bridge({ name: UNKNOWN })]);
    expect(renamed.steps).toEqual([
      expect.objectContaining({
        op: "replace",
        detail: expect.objectContaining({ replaces: ["name"] }),
      }),
    ]);

    const moved = await engine.preview([await bridge({ connection: { ...c, host: UNKNOWN } })]);
    expect(moved.steps).toEqual([
      expect.objectContaining({
        op: "replace",
        detail: expect.objectContaining({ replaces: ["connection"] }),
      }),
    ]);

    const whole = await engine.preview([await bridge({ connection: UNKNOWN })]);
    expect(whole.steps[0]?.op).toBe("replace");

    const created = await engine.preview([
      await bridge({}),
      await spec("TapDevice", "t", { connection: UNKNOWN, name: UNKNOWN, bridge: UNKNOWN }),
      await spec("DnsmasqInstance", "d", {
        connection: c,
        name: "hvk-d",
        interface: UNKNOWN,
        subnet: UNKNOWN,
        dhcpRange: UNKNOWN,
      }),
    ]);
    expect(created.failures).toEqual({});
    expect(created.steps.map((s) => [s.op, s.name])).toEqual([
      ["same", "b"],
      ["create", "t"],
      ["create", "d"],
    ]);

    // An unknown beside a known bad value: the bad value still fails the check.
    const bad = await engine.preview([
      await bridge({ mtu: UNKNOWN, addresses: ["10.0.0.300/24"] }),
    ]);
    expect(
      Object.values(bad.failures)
        .flat()
        .map((f) => f.property),
    ).toEqual(["addresses[0]"]);

    expect(await h.sshConnectionCount()).toBe(before);
  });
});

describe("dynamic classes: refresh", () => {
  it("returns the observed inputs, so the stored inputs follow the host", async () => {
    const { engine, plugin } = await startEngine();
    try {
      const c = h.connection();
      await engine.up([await spec("Bridge", "r", { connection: c, name: "hvk-r0" })]);
      expect(engine.state.get("r")?.inputs["stp"]).toBeUndefined();
      const set = await h.exec(["ip", "link", "set", "hvk-r0", "type", "bridge", "stp_state", "1"]);
      expect(set.code).toBe(0);
      const { steps } = await engine.refresh();
      expect(steps).toEqual([
        expect.objectContaining({
          op: "refresh-changed",
          detail: expect.objectContaining({ inputsChanged: true }),
        }),
      ]);
      expect(engine.state.get("r")?.inputs).toMatchObject({ name: "hvk-r0", stp: true });
      // The program still says nothing about stp (default off): the drift is an update.
      const p = await engine.preview([
        await spec("Bridge", "r", { connection: c, name: "hvk-r0" }),
      ]);
      expect(p.steps.map((st) => st.op)).toEqual(["update"]);
    } finally {
      await engine.destroy();
      await plugin.stop();
    }
  });
});

describe("native plugin: a preview with unknown inputs and configuration", () => {
  let engine: NativeEngine;

  beforeAll(async () => {
    engine = new NativeEngine();
    await engine.provider("default", { connection: secret(h.connection()) });
    await engine.up([{ type: BRIDGE, name: "nb", inputs: { name: "hvk-nb0" } }]);
  });

  afterAll(async () => {
    await engine?.destroy();
    await engine?.stop();
  });

  it("plans from unknowns in every position without connecting", async () => {
    const before = await h.sshConnectionCount();
    const c = h.connection();

    const live = await engine.preview([
      { type: BRIDGE, name: "nb", inputs: { name: "hvk-nb0", mtu: UNKNOWN } },
    ]);
    expect(live.failures).toEqual({});
    expect(live.steps).toEqual([
      expect.objectContaining({
        op: "update",
        diff: expect.objectContaining({ detailedDiff: { mtu: "ADD" } }),
        properties: expect.objectContaining({ macAddress: UNKNOWN }),
      }),
    ]);

    const renamed = await engine.preview([{ type: BRIDGE, name: "nb", inputs: { name: UNKNOWN } }]);
    expect(renamed.steps).toEqual([
      expect.objectContaining({
        op: "replace",
        diff: expect.objectContaining({ detailedDiff: { name: "UPDATE_REPLACE" } }),
      }),
    ]);

    const moved = await engine.preview([
      {
        type: BRIDGE,
        name: "nb",
        inputs: { name: "hvk-nb0", connection: secret({ ...c, host: UNKNOWN }) },
      },
    ]);
    expect(moved.steps[0]).toMatchObject({ op: "replace", diff: { replaces: ["connection"] } });

    const created = await engine.preview([
      { type: BRIDGE, name: "nb", inputs: { name: "hvk-nb0" } },
      { type: TAP, name: "nt", inputs: { name: "hvk-nt0", bridge: UNKNOWN } },
    ]);
    expect(created.failures).toEqual({});
    expect(created.steps.map((s) => [s.op, s.name])).toEqual([
      ["same", "nb"],
      ["create", "nt"],
    ]);
    expect(created.steps[1]?.properties?.["macAddress"]).toBe(UNKNOWN);

    // Provider configuration from another resource: one unknown field, then the whole connection
    // (a generated SDK sends it as one JSON string, so one unknown field makes it all unknown).
    const plugin = engine.plugin();
    const one = await plugin.checkConfig({}, { connection: secret({ ...c, host: UNKNOWN }) });
    expect(one.failures).toEqual([]);
    const whole = await plugin.checkConfig({}, { connection: UNKNOWN });
    expect(whole.failures).toEqual([]);
    await engine.provider("later", { connection: UNKNOWN });
    const onLater = await engine.preview([
      { type: BRIDGE, name: "nb", inputs: { name: "hvk-nb0" } },
      { type: BRIDGE, name: "lb", provider: "later", inputs: { name: "hvk-lb0" } },
    ]);
    expect(onLater.failures).toEqual({});
    expect(onLater.steps.map((st) => [st.provider, st.op, st.name])).toEqual([
      ["default", "same", "nb"],
      ["later", "create", "lb"],
    ]);

    const bad = await engine.plugin().check(urnOf(BRIDGE, "x"), {}, { name: UNKNOWN, mtu: -1 });
    expect(bad.failures.map((f) => f.property)).toEqual(["mtu"]);

    expect(await h.sshConnectionCount()).toBe(before);
    // Nothing warned either: no host was tried. (The plugin's once-per-host note that this lab
    // host has no systemd came from the earlier previews over the pooled connection.)
    const warnings = (await engine.engineLog()).filter(
      (m) => m.severity === "warning" && !/PID 1 is not systemd/.test(m.message),
    );
    expect(warnings).toEqual([]);
  });
});
