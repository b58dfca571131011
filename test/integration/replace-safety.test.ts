// Replacements that must never destroy the old object before the new one is sure to work, driven
// through the dynamic-provider plugin the way the engine does (Diff, Delete, Create in its order).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import { PluginError, type DynamicProviderPlugin, type Engine } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";

const LAB = "prepl";

let lab: Lab;
let a: LabHost;
let b: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

beforeAll(async () => {
  lab = await startLab({ name: LAB, hosts: 2 });
  [a, b] = [lab.hosts[0]!, lab.hosts[1]!];
  ({ plugin, engine } = await startEngine());
});

afterAll(async () => {
  await plugin?.stop();
  await lab?.stop();
});

/** Returns the interface's kind and master inside the lab host, or undefined when it is absent. */
async function link(
  h: LabHost,
  name: string,
): Promise<{ kind: string; master?: string } | undefined> {
  const r = await h.exec(["ip", "-j", "-d", "link", "show"]);
  if (r.code !== 0) throw new Error(`ip link show exited ${r.code}: ${r.stderr}`);
  const links = JSON.parse(r.stdout) as Array<{
    ifname: string;
    master?: string;
    linkinfo?: { info_kind?: string };
  }>;
  const l = links.find((x) => x.ifname === name);
  if (!l) return undefined;
  return { kind: l.linkinfo?.info_kind ?? "none", ...(l.master ? { master: l.master } : {}) };
}

describe("replace safety", () => {
  it("keeps the old tap when its replacement names an owner the host does not know", async () => {
    const tap = (owner?: string) =>
      spec("TapDevice", "rtap0", {
        connection: a.connection(),
        name: "rtap0",
        ...(owner ? { owner } : {}),
      });
    await engine.up([await tap()]);
    expect(await link(a, "rtap0")).toEqual({ kind: "tun" });
    const id = engine.state.get("rtap0")?.id;

    const err = await engine.up([await tap("nosuchuser")]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).message).toContain(
      `tap device "rtap0" on root@${a.address}:${a.port}: not deleted, because its replacement "rtap0" would fail: owner "nosuchuser" is not a user on the host`,
    );
    expect(await link(a, "rtap0")).toEqual({ kind: "tun" });
    expect(engine.state.get("rtap0")?.id).toBe(id);

    // the old inputs again: nothing to do, the tap was never touched
    const again = await engine.up([await tap()]);
    expect(again.steps).toEqual([{ op: "same", name: "rtap0" }]);
    await engine.destroy();
    expect(await link(a, "rtap0")).toBeUndefined();
  });

  it("keeps the bridge when a typo in the connection makes its replacement fail", async () => {
    const br = (connection: object) => spec("Bridge", "rbr0", { connection, name: "rbr0" });
    await engine.up([await br(a.connection())]);
    expect(await link(a, "rbr0")).toEqual({ kind: "bridge" });

    // nothing listens on port 1. The same pinned host key says "the same machine", so it is a
    // delete-first replace, and Delete refuses because the replacement cannot reach the host.
    const typo = { ...a.connection(), port: 1, dialErrorLimit: 1 };
    const err = await engine.up([await br(typo)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).message).toContain(
      `bridge "rbr0" on root@${a.address}:${a.port}: not deleted, because its replacement "rbr0" would fail: `,
    );
    expect(await link(a, "rbr0")).toEqual({ kind: "bridge" });
    expect(engine.state.get("rbr0")?.outputs["connection"]).toEqual(a.connection());
    expect(engine.pendingDeletes).toEqual([]);

    // another host key: another machine, so the replacement is created first; it fails and the
    // old bridge is neither deleted nor marked for deletion
    const elsewhere = { ...typo, hostKey: b.connection().hostKey };
    const failed = await engine.up([await br(elsewhere)]).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PluginError);
    expect((failed as PluginError).message).not.toContain("not deleted");
    expect(await link(a, "rbr0")).toEqual({ kind: "bridge" });
    expect(engine.state.get("rbr0")?.outputs["connection"]).toEqual(a.connection());
    expect(engine.pendingDeletes).toEqual([]);

    // a real move to another host: created there first, then the old one deleted
    const moved = await engine.up([await br(b.connection())]);
    expect(moved.steps).toEqual([
      {
        op: "replace",
        name: "rbr0",
        detail: {
          changes: "some",
          replaces: ["connection"],
          deleteBeforeReplace: false,
          oldId: "rbr0",
          id: "rbr0",
        },
      },
    ]);
    expect(await link(b, "rbr0")).toEqual({ kind: "bridge" });
    expect(await link(a, "rbr0")).toBeUndefined();
    await engine.destroy();
    expect(await link(b, "rbr0")).toBeUndefined();
  });
});
