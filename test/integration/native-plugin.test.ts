// The native plugin (provider/bin/pulumi-resource-hypervisor) on two lab hosts, one provider per
// host, driven over gRPC as the engine drives it (lab/engine/native-engine.ts).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, startLab, type Lab, type LabHost } from "../../lab";
import {
  isSecret,
  NativeEngine,
  PluginError,
  REPO_ROOT,
  secret,
  UNKNOWN,
  urnOf,
  type NativeResourceSpec,
} from "../../lab/engine/native-engine";
import { privateKeyBody } from "../support/private-key";

// Guest networks inside the lab hosts (first three octets of a /24).
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);
const NET_2 = labGuestNet(2);

const BRIDGE = "hypervisor:index:Bridge";
const LAB_PASSWORD = "hvpass-Secret.1";

let lab: Lab;
let h1: LabHost;
let h2: LabHost;
let engine: NativeEngine;

async function linkOf(h: LabHost, name: string): Promise<{ addrs: string[] } | undefined> {
  const r = await h.exec(["ip", "-j", "addr", "show", "dev", name]);
  if (r.code !== 0) return undefined;
  const [l] = JSON.parse(r.stdout) as {
    addr_info?: { local: string; prefixlen: number; scope: string }[];
  }[];
  return {
    addrs: (l?.addr_info ?? [])
      .filter((a) => a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`),
  };
}

function bridges(addrA: string, addrB: string): NativeResourceSpec[] {
  return [
    { type: BRIDGE, name: "a", provider: "hv1", inputs: { name: "hvn-a", addresses: [addrA] } },
    {
      type: BRIDGE,
      name: "b",
      provider: "hv2",
      // This one brings its own connection (secret, as the SDK sends it) instead of the provider's.
      inputs: { name: "hvn-b", addresses: [addrB], connection: secret(h2.connection()) },
    },
  ];
}

beforeAll(async () => {
  lab = await startLab({ name: "itnative", hosts: 2 });
  [h1, h2] = lab.hosts as [LabHost, LabHost];
  engine = new NativeEngine();
});

afterAll(async () => {
  await engine?.stop();
  await lab?.stop();
});

describe("native plugin", () => {
  it("configures two providers and rejects bad input without opening an SSH connection", async () => {
    const before = [await h1.sshConnectionCount(), await h2.sshConnectionCount()];
    await engine.provider("default", {});
    await engine.provider("hv1", { connection: secret(h1.connection()) });
    // Generated SDKs and stack config send nested config as JSON strings.
    await engine.provider("hv2", { connection: secret(JSON.stringify(h2.connection())) });
    const plugin = engine.plugin("hv1");
    expect(plugin.supportsPreview).toBe(true);
    expect(plugin.acceptsSecrets).toBe(true);

    const bad = await plugin.check(
      urnOf(BRIDGE, "x"),
      {},
      {
        name: "not a name!",
        addresses: [`${NET_0}.300/24`],
      },
    );
    expect(bad.failures.map((f) => f.property)).toEqual(["name", "addresses[0]"]);
    expect(bad.failures[1]?.reason).toContain("addresses[0]");
    // The default provider has no connection and the resource brings none.
    const none = await engine.plugin("default").check(urnOf(BRIDGE, "y"), {}, { name: "hvn-y" });
    expect(none.failures.map((f) => f.property)).toEqual(["connection"]);
    // A bad provider configuration names the property and never echoes a value.
    const cfg = await plugin.checkConfig(
      {},
      { connection: { host: "h", port: "x", password: "pw-marker-9" } },
    );
    expect(cfg.failures.map((f) => f.property)).toEqual(["connection.port"]);
    expect(JSON.stringify(cfg.failures)).not.toContain("pw-marker-9");

    // Values computed by other resources are unknown in preview: not checked, and a change.
    const later = await plugin.check(
      urnOf(BRIDGE, "z"),
      {},
      { name: UNKNOWN, addresses: [UNKNOWN] },
    );
    expect(later.failures).toEqual([]);
    const d = await plugin.diff(
      "hvn-z",
      urnOf(BRIDGE, "z"),
      { name: "hvn-z", addresses: [] },
      {
        name: "hvn-z",
        addresses: UNKNOWN,
      },
    );
    expect(d).toMatchObject({
      changes: "some",
      replaces: [],
      detailedDiff: { addresses: "UPDATE" },
    });

    expect([await h1.sshConnectionCount(), await h2.sshConnectionCount()]).toEqual(before);
  });

  it("serves schema.json with the package version, and that version", async () => {
    const schema = await engine.plugin("hv1").getSchema();
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    const file = JSON.parse(readFileSync(path.join(REPO_ROOT, "schema.json"), "utf8")) as object;
    expect(JSON.parse(schema)).toEqual({ ...file, version: pkg.version });
    expect(await engine.plugin("hv1").getPluginInfo()).toEqual({ version: pkg.version });
  });

  it("previews the creates with the commands it would run, changing nothing", async () => {
    const { steps, failures } = await engine.preview(bridges(`${NET_0}.1/24`, `${NET_1}.1/24`));
    expect(failures).toEqual({});
    expect(steps.map((s) => [s.op, s.name, s.provider])).toEqual([
      ["create", "a", "hv1"],
      ["create", "b", "hv2"],
    ]);
    const a = steps[0]!;
    expect(a.plannedSteps?.some((s) => s.includes("ip link add name hvn-a type bridge"))).toBe(
      true,
    );
    expect(a.plannedSteps?.some((s) => s.includes(`ip addr add ${NET_0}.1/24 dev hvn-a`))).toBe(
      true,
    );
    expect(a.properties?.["macAddress"]).toBe(UNKNOWN);
    expect(a.properties?.["connection"]).toBeUndefined();
    expect(isSecret(steps[1]!.properties?.["connection"])).toBe(true);
    expect(await linkOf(h1, "hvn-a")).toBeUndefined();
    expect(await linkOf(h2, "hvn-b")).toBeUndefined();
  });

  it("previews a host it cannot reach without steps instead of failing", async () => {
    const unreachable = { ...h1.connection(), port: 2, dialErrorLimit: 1, perDialTimeout: 2 };
    const { steps } = await engine.preview([
      ...bridges(`${NET_0}.1/24`, `${NET_1}.1/24`),
      {
        type: BRIDGE,
        name: "u",
        provider: "hv1",
        inputs: { name: "hvn-u", connection: secret(unreachable) },
      },
    ]);
    const u = steps.find((s) => s.name === "u")!;
    expect(u.op).toBe("create");
    expect(u.plannedSteps).toBeUndefined();
    expect(u.properties).toMatchObject({
      name: "hvn-u",
      addresses: [],
      stp: false,
      ifIndex: UNKNOWN,
    });
    expect(engine.logs()).toContain(
      `bridge "hvn-u" on root@${h1.address}:2: preview without steps`,
    );
  });

  it("creates a bridge on each host; connection stays secret in state", async () => {
    const { steps } = await engine.up(bridges(`${NET_0}.1/24`, `${NET_1}.1/24`));
    expect(steps.map((s) => [s.op, s.name])).toEqual([
      ["create", "a"],
      ["create", "b"],
    ]);
    expect((await linkOf(h1, "hvn-a"))?.addrs).toEqual([`${NET_0}.1/24`]);
    expect((await linkOf(h2, "hvn-b"))?.addrs).toEqual([`${NET_1}.1/24`]);
    const a = engine.state.get("a")!;
    const b = engine.state.get("b")!;
    expect(a.outputs["connection"]).toBeUndefined();
    expect(typeof a.outputs["ifIndex"]).toBe("number");
    expect(a.outputs["plannedSteps"]).toBeUndefined();
    expect(isSecret(b.outputs["connection"])).toBe(true);
    expect(JSON.stringify(b.outputs).includes(privateKeyBody(h2))).toBe(false);
  });

  it("marks name UPDATE_REPLACE and addresses UPDATE, consistent with replaces", async () => {
    const plugin = engine.plugin("hv1");
    const a = engine.state.get("a")!;
    const d = await plugin.diff(
      a.id,
      a.urn,
      a.outputs,
      { name: "hvn-a2", addresses: [`${NET_0}.2/24`] },
      a.inputs,
    );
    expect(d).toMatchObject({
      changes: "some",
      replaces: ["name"],
      deleteBeforeReplace: true,
      hasDetailedDiff: true,
      detailedDiff: { name: "UPDATE_REPLACE", addresses: "UPDATE" },
    });
    // The preview of an address change lists the commands of the live update.
    const { steps } = await engine.preview(bridges(`${NET_0}.2/24`, `${NET_1}.1/24`));
    const upd = steps.find((s) => s.name === "a")!;
    expect(upd.op).toBe("update");
    expect(upd.diff?.detailedDiff).toEqual({ addresses: "UPDATE" });
    expect(upd.plannedSteps).toEqual([
      `remove address ${NET_0}.1/24 from hvn-a: ip addr del ${NET_0}.1/24 dev hvn-a`,
      `add address ${NET_0}.2/24 to hvn-a: ip addr add ${NET_0}.2/24 dev hvn-a`,
    ]);
    expect(steps.find((s) => s.name === "b")?.op).toBe("same");
    expect((await linkOf(h1, "hvn-a"))?.addrs).toEqual([`${NET_0}.1/24`]);
  });

  it("rotates credentials without a replace; a host change would replace", async () => {
    const c = h1.connection();
    // Same host, other user and credentials, fields set one by one as stack config sends them.
    const rotated = {
      host: c.host,
      port: "22",
      user: "hvpass",
      password: secret(LAB_PASSWORD),
      sudo: secret(JSON.stringify({ password: LAB_PASSWORD })),
      hostKey: c.hostKey,
    };
    const r = await engine.provider("hv1", rotated);
    expect(r.replaced).toBe(false);
    expect(r.diff?.changes).toBe("some");
    expect(r.diff?.replaces).toEqual([]);
    // The object gave way to fields set one by one: removed and added, never a replace.
    expect(r.diff?.detailedDiff).toMatchObject({ connection: "DELETE", host: "ADD", sudo: "ADD" });
    expect(Object.values(r.diff?.detailedDiff ?? {}).some((k) => k.endsWith("_REPLACE"))).toBe(
      false,
    );
    // The new plugin reaches the host with the rotated credentials (sudo with a password).
    const { steps } = await engine.refresh();
    expect(steps.find((s) => s.name === "a")?.op).toBe("same");

    const moved = await engine
      .plugin("hv1")
      .diffConfig({ connection: h1.connection() }, { connection: h2.connection() });
    expect(moved).toMatchObject({
      changes: "some",
      replaces: ["connection"],
      detailedDiff: { connection: "UPDATE_REPLACE" },
    });
    const flatMoved = await engine
      .plugin("hv1")
      .diffConfig(rotated, { ...rotated, host: h2.address });
    expect(flatMoved.replaces).toEqual(["host"]);
  });

  it("a preview with nothing to change opens no SSH connection", async () => {
    await engine.provider("hv1", { connection: secret(h1.connection()) });
    const before = await h1.sshConnectionCount();
    const { steps } = await engine.preview(bridges(`${NET_0}.1/24`, `${NET_1}.1/24`));
    expect(steps.map((s) => s.op)).toEqual(["same", "same"]);
    expect(await h1.sshConnectionCount()).toBe(before);
  });

  it("imports a bridge made by hand; its inputs preview as no change", async () => {
    for (const argv of [
      ["ip", "link", "add", "name", "hvn-imp", "type", "bridge"],
      ["ip", "addr", "add", `${NET_2}.1/24`, "dev", "hvn-imp"],
      ["ip", "link", "set", "hvn-imp", "up"],
    ]) {
      expect((await h1.exec(argv)).code).toBe(0);
    }
    const imported = await engine.import(BRIDGE, "imp", "hvn-imp", "hv1");
    expect(imported.inputs).toMatchObject({
      name: "hvn-imp",
      addresses: [`${NET_2}.1/24`],
      stp: false,
      ports: [],
    });
    const specs = [
      ...bridges(`${NET_0}.1/24`, `${NET_1}.1/24`),
      { type: BRIDGE, name: "imp", provider: "hv1", inputs: imported.inputs },
    ];
    const { steps } = await engine.preview(specs);
    expect(steps.map((s) => [s.name, s.op])).toEqual([
      ["a", "same"],
      ["imp", "same"],
      ["b", "same"],
    ]);
    await expect(engine.import(BRIDGE, "gone", "hvn-none", "hv1")).rejects.toThrow(
      /does not exist/,
    );
  });

  it("refresh finds drift and a bridge deleted by hand", async () => {
    expect((await h1.exec(["ip", "addr", "add", `${NET_0}.9/24`, "dev", "hvn-a"])).code).toBe(0);
    expect((await h2.exec(["ip", "link", "del", "hvn-b"])).code).toBe(0);
    const { steps } = await engine.refresh();
    const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
    expect(byName["a"]?.op).toBe("refresh-changed");
    expect(engine.state.get("a")?.outputs["addresses"]).toEqual([`${NET_0}.1/24`, `${NET_0}.9/24`]);
    expect(byName["b"]?.op).toBe("refresh-gone");
    expect(byName["imp"]?.op).toBe("same");
  });

  it("a failed create names the host, never a credential", async () => {
    const c = h2.connection();
    const wrongKey = h1.connection().hostKey;
    const imp = engine.state.get("imp")!;
    const err = await engine
      .up([
        bridges(`${NET_0}.1/24`, `${NET_1}.1/24`)[0]!,
        { type: BRIDGE, name: "imp", provider: "hv1", inputs: imp.inputs },
        {
          type: BRIDGE,
          name: "w",
          provider: "hv2",
          inputs: {
            name: "hvn-w",
            connection: secret({
              ...c,
              hostKey: wrongKey,
              password: "pw-marker-7",
              dialErrorLimit: 1,
            }),
          },
        },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    const msg = (err as PluginError).message;
    expect(msg).toContain(c.host);
    expect(msg).not.toContain("pw-marker-7");
    expect(msg).not.toContain(privateKeyBody(h2));
  });

  it("destroys what it created and imported", async () => {
    const { steps } = await engine.destroy();
    expect(steps.map((s) => s.name).sort()).toEqual(["a", "imp"]);
    expect(await linkOf(h1, "hvn-a")).toBeUndefined();
    expect(await linkOf(h1, "hvn-imp")).toBeUndefined();
  });

  it("never logs a credential", () => {
    const all = engine.logs();
    expect(all).toContain("pulumi-hypervisor: bridge");
    expect(all).not.toContain(privateKeyBody(h1));
    expect(all).not.toContain(LAB_PASSWORD);
    expect(all).not.toContain("pw-marker");
  });
});
