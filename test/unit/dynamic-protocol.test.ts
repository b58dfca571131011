// The dynamic classes through @pulumi/pulumi's dynamic-provider plugin, loading the built package
// (npm run build first), without a lab host: unknowns in Check and Diff for every resource type,
// and warnings through the engine's Log service (the plugin's argument).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DynamicProviderPlugin, UNKNOWN } from "../../lab/engine/engine";
import { FakeEngine } from "../../lab/engine/fake-engine";
import { urnOf } from "../../lab/engine/provider-client";
import { resourceModules } from "../../provider/src/registry";
import { REPO_ROOT, spec } from "../../lab/harness";

let fake: FakeEngine;
let plugin: DynamicProviderPlugin;

beforeAll(async () => {
  fake = await FakeEngine.start();
  plugin = await DynamicProviderPlugin.start({ cwd: REPO_ROOT, engineAddress: fake.address });
  await plugin.configure({});
});

afterAll(async () => {
  await plugin?.stop();
  fake?.stop();
});

describe("dynamic classes: unknowns in a preview", () => {
  it.each(Object.keys(resourceModules))(
    "%s: Check passes unknowns and still fails a known bad value beside them",
    async (type) => {
      const mod = resourceModules[type]!;
      const allUnknown = Object.fromEntries(mod.inputKeys.map((k) => [k, UNKNOWN]));
      const s = await spec(type, "r", { ...allUnknown, connection: UNKNOWN });
      const urn = urnOf(s.type, s.name);
      expect((await plugin.check(urn, {}, s.inputs)).failures).toEqual([]);
      const bad = await plugin.check(urn, {}, { ...s.inputs, name: "not a name!" });
      expect(bad.failures.map((f) => f.property)).toEqual(["name"]);
    },
  );
  it("Diff: an unknown identity input replaces, an unknown live input updates", async () => {
    const c = { host: "198.18.0.2", password: "pw" };
    const s = await spec("Bridge", "b", { connection: c, name: "br0" });
    const urn = urnOf(s.type, s.name);
    const olds = { ...s.inputs, addresses: [], stp: false, macAddress: "52:54:00:00:00:01" };
    const byName = await plugin.diff("br0", urn, olds, { ...s.inputs, name: UNKNOWN });
    expect(byName).toEqual({ changes: "some", replaces: ["name"], deleteBeforeReplace: true });
    const byMtu = await plugin.diff("br0", urn, olds, { ...s.inputs, mtu: UNKNOWN });
    expect(byMtu).toEqual({ changes: "some", replaces: [], deleteBeforeReplace: false });
    const byHost = await plugin.diff("br0", urn, olds, {
      ...s.inputs,
      connection: { ...c, host: UNKNOWN },
    });
    expect(byHost.replaces).toEqual(["connection"]);
  });
});

describe("dynamic classes: warnings", () => {
  it("reach the engine's Log service before the operation answers", async () => {
    const s = await spec("Bridge", "w", {
      connection: { host: "127.0.0.1", port: 1, dialErrorLimit: 2, perDialTimeout: 1 },
      name: "br0",
    });
    await expect(plugin.create(urnOf(s.type, s.name), s.inputs)).rejects.toThrow(
      /could not connect after 2 attempts/,
    );
    expect(fake.of("warning").map((m) => m.message)).toEqual([
      expect.stringMatching(/^root@127\.0\.0\.1:1: connect attempt 1\/2 failed: .*; retrying in /),
    ]);
  });
});
