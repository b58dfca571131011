// schema.json, the SDK classes and the reference docs are generated from the registry's zod
// schemas (`npm run generate`, scripts/generate.ts) and checked in.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { Connection } from "../../provider/src/host/connection";
import { resourceModules } from "../../provider/src/registry";
import { dnsmasqPaths } from "../../provider/src/resources/dnsmasq-instance/schema";
import { BridgeInputs } from "../../provider/src/resources/bridge/schema";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { QemuGuestInputs } from "../../provider/src/resources/qemu-guest/schema";
import { convertSchema, generateFiles, leftoverFiles, ROOT } from "../../scripts/generate";
import { native } from "../../sdk";
import { runProgramWithMocks } from "../../lab/engine/mocks";

interface Prop {
  type?: string;
  $ref?: string;
  items?: Prop;
  oneOf?: Prop[];
  description?: string;
  secret?: boolean;
  replaceOnChanges?: boolean;
}
interface ObjectSpec {
  properties: Record<string, Prop>;
  required?: string[];
}
interface Schema {
  name: string;
  config: { variables: Record<string, Prop> };
  provider: { inputProperties: Record<string, Prop> };
  types: Record<string, ObjectSpec>;
  resources: Record<
    string,
    {
      description: string;
      inputProperties: Record<string, Prop>;
      requiredInputs: string[];
      properties: Record<string, Prop>;
      required: string[];
    }
  >;
}

const text = readFileSync(path.join(ROOT, "schema.json"), "utf8");
const schema = JSON.parse(text) as Schema;

const link = { ifIndex: 7, macAddress: "02:00:00:00:00:07", mtu: 1500, up: true };
// The persisted layer of a host without systemd.
const persisted = { systemd: false, unit: "", enabled: "", active: "", files: {} };
// Each module's state with its object present (outputs as the program sees them after a create)
// and gone (after a half-done create), reduced to what `outputs` reads.
const states: Record<string, { present: unknown; gone: unknown }> = {
  Bridge: {
    present: {
      name: "br0",
      bridge: { name: "br0", ...link, kind: "bridge", addresses: [] },
      persisted,
      inputs: BridgeInputs.parse({ name: "br0" }),
    },
    gone: { name: "br0", bridge: undefined },
  },
  TapDevice: {
    present: {
      name: "tap0",
      tap: { name: "tap0", ...link, kind: "tun" },
      persisted,
      inputs: TapDeviceInputs.parse({ name: "tap0" }),
    },
    gone: { name: "tap0", tap: undefined },
  },
  DnsmasqInstance: {
    present: {
      name: "lan",
      paths: dnsmasqPaths("lan"),
      pid: 4242,
      leases: [{ expires: 0, mac: "02:00:00:00:00:08", ip: "198.18.130.10" }],
      persist: { systemd: false, unit: "", enabled: "", active: "", files: {} },
    },
    gone: {
      name: "lan",
      paths: dnsmasqPaths("lan"),
      pid: undefined,
      leases: [],
      persist: { systemd: false, unit: "", enabled: "", active: "", files: {} },
    },
  },
  NatRule: {
    present: {
      name: "guests",
      nft: { chains: {}, extras: [], jumps: [] },
      iptables: undefined,
      persisted,
      inputs: NatRuleInputs.parse({
        name: "guests",
        sourceCidr: "198.18.0.0/24",
        outInterface: "wan0",
      }),
    },
    gone: { name: "guests", nft: undefined, iptables: undefined },
  },
  QemuGuest: {
    present: {
      name: "vm1",
      inputs: QemuGuestInputs.parse({ name: "vm1" }),
      process: { pid: 99, argv: [], status: "running", accel: "tcg", qmpName: "vm1" },
      persist: { systemd: false, unit: "", enabled: "", active: "", files: {} },
    },
    gone: {
      name: "vm1",
      inputs: QemuGuestInputs.parse({ name: "vm1" }),
      process: undefined,
      persist: { systemd: false, unit: "", enabled: "", active: "", files: {} },
    },
  },
};

describe("generated files", () => {
  it("are what `npm run generate` writes (run it after changing a schema)", async () => {
    const files = await generateFiles();
    expect([...files.keys()]).toEqual(
      expect.arrayContaining(["schema.json", "sdk/index.ts", "docs/reference/connection.md"]),
    );
    const stale = [...files]
      .filter(([file, content]) => {
        try {
          return readFileSync(path.join(ROOT, file), "utf8") !== content;
        } catch {
          return true;
        }
      })
      .map(([file]) => file);
    expect(stale, "stale generated files: run npm run generate").toEqual([]);
    expect(leftoverFiles(files), "generated files of no resource").toEqual([]);
  });
});

describe("the generator", () => {
  it("refuses a field without a description and an object type without a name", () => {
    expect(() => convertSchema(z.object({ a: z.string() }), "input", "T")).toThrow(
      'T.a: add a .describe("...")',
    );
    const inner = z.object({ b: z.string().describe("b") });
    expect(() => convertSchema(z.object({ a: inner.describe("a") }), "input", "T")).toThrow(
      "T.a: an object type needs a name: add .meta({ id, description })",
    );
  });

  it("keeps defaults, nullability and named types from the zod schema", () => {
    const Item = z
      .object({
        mac: z
          .string()
          .transform((m) => m.toLowerCase())
          .describe("m"),
      })
      .meta({ id: "GeneratorTestItem", description: "an item" });
    const { fields, types } = convertSchema(
      z.object({
        items: z.array(Item).default([]).describe("items"),
        bridge: z.string().nullable().default(null).describe("bridge"),
      }),
      "input",
      "T",
    );
    expect(fields).toEqual([
      {
        name: "items",
        type: { kind: "array", items: { kind: "ref", id: "GeneratorTestItem" } },
        description: "items",
        required: false,
        nullable: false,
        default: [],
        secret: false,
      },
      {
        name: "bridge",
        type: { kind: "string" },
        description: "bridge",
        required: false,
        nullable: true,
        secret: false,
      },
    ]);
    expect(types.get("GeneratorTestItem")?.fields.map((f) => f.name)).toEqual(["mac"]);
  });
});

describe("schema.json", () => {
  it("has one resource per registry entry, with its inputs, required inputs and identity", () => {
    expect(schema.name).toBe("hypervisor");
    expect(Object.keys(schema.resources).sort()).toEqual(
      Object.keys(resourceModules)
        .map((t) => `hypervisor:index:${t}`)
        .sort(),
    );
    for (const [type, mod] of Object.entries(resourceModules)) {
      const r = schema.resources[`hypervisor:index:${type}`]!;
      expect(Object.keys(r.inputProperties)).toEqual(["connection", ...mod.inputKeys]);
      expect(r.requiredInputs).toContain("name");
      expect(r.requiredInputs).not.toContain("connection");
      // Required inputs are exactly those whose zod schema rejects a missing value.
      const shape = (mod.inputs as unknown as z.ZodObject).shape;
      const required = Object.keys(shape).filter((k) => !shape[k]!.safeParse(undefined).success);
      expect([...r.requiredInputs].sort(), type).toEqual(required.sort());
      const replacing = Object.entries(r.inputProperties)
        .filter(([, p]) => p.replaceOnChanges)
        .map(([k]) => k);
      expect(replacing.sort(), type).toEqual([...mod.identity].sort());
      expect(r.inputProperties["connection"]).toMatchObject({
        $ref: "#/types/hypervisor:index:Connection",
        secret: true,
      });
      for (const [k, p] of Object.entries(r.properties)) {
        expect(p.description, `${type}.${k}`).toMatch(/\S/);
      }
    }
  });

  it("declares every output a module reports, as its outputs schema describes it", () => {
    expect(Object.keys(states).sort()).toEqual(Object.keys(resourceModules).sort());
    for (const [type, mod] of Object.entries(resourceModules)) {
      const keys = Object.keys(mod.outputSchema.shape);
      const present = mod.outputs(states[type]!.present);
      expect(Object.keys(present).sort(), type).toEqual([...keys].sort());
      expect(mod.outputSchema.strict().safeParse(present).error, type).toBeUndefined();
      // a gone object still reports every key, so the engine replaces stale values
      expect(Object.keys(mod.outputs(states[type]!.gone)).sort(), type).toEqual([...keys].sort());
      const props = schema.resources[`hypervisor:index:${type}`]!.properties;
      for (const k of [...keys, "plannedSteps"]) expect(props[k], `${type}.${k}`).toBeDefined();
    }
  });

  it("marks credentials secret and gives the provider the connection", () => {
    const conn = schema.types["hypervisor:index:Connection"]!;
    expect(conn.required).toEqual(["host"]);
    expect(conn.properties["proxy"]?.$ref).toBe("#/types/hypervisor:index:Connection");
    const secrets = Object.entries(conn.properties)
      .filter(([, p]) => p.secret)
      .map(([k]) => k);
    expect(secrets.sort()).toEqual(["password", "privateKey", "privateKeyPassword"]);
    // the zod schema is where they are marked
    const shape = (Connection as unknown as z.ZodObject).shape;
    const marked = Object.keys(shape).filter(
      (k) => (shape[k]!.meta() as { secret?: boolean } | undefined)?.secret,
    );
    expect(marked.sort()).toEqual(secrets.sort());
    expect(schema.types["hypervisor:index:ConnectionSudo"]?.properties["password"]?.secret).toBe(
      true,
    );
    expect(schema.provider.inputProperties["connection"]).toMatchObject({ secret: true });
    // Stack config: the whole connection, or its fields one by one, credentials secret.
    expect(schema.config.variables["connection"]?.secret).toBe(true);
    expect(schema.config.variables["host"]?.type).toBe("string");
    expect(schema.config.variables["privateKey"]?.secret).toBe(true);
    expect(schema.config.variables["port"]?.description).toContain("`22`");
  });

  it("only references types it defines", () => {
    const refs = [...text.matchAll(/"\$ref": "#\/types\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(5);
    for (const r of refs) expect(schema.types[r], r).toBeDefined();
  });
});

describe("native SDK classes", () => {
  it("register the schema's tokens; connection secret, optional under a Provider", async () => {
    const conn = { host: "198.18.61.2", privateKey: "secret-key-material" };
    const captured = await runProgramWithMocks(() => {
      const hv1 = new native.Provider("hv1", { connection: conn });
      new native.Bridge("br", { name: "br0", addresses: ["198.18.160.1/24"] }, { provider: hv1 });
      new native.TapDevice("tap", { name: "tap0", bridge: "br0", connection: conn });
    });
    // Registration order depends on when the provider reference resolves.
    const byName = Object.fromEntries(captured.map((r) => [r.name, r]));
    expect(captured.map((r) => `${r.type} ${r.name}`).sort()).toEqual([
      "hypervisor:index:Bridge br",
      "hypervisor:index:TapDevice tap",
      "pulumi:providers:hypervisor hv1",
    ]);
    expect(byName["hv1"]?.secretKeys).toEqual(["connection"]);
    expect(byName["hv1"]?.inputs["connection"]).toEqual(conn);
    expect(byName["br"]?.inputs).toEqual({ name: "br0", addresses: ["198.18.160.1/24"] });
    expect(byName["tap"]?.secretKeys).toEqual(["connection"]);
    for (const r of captured.filter((c) => c.type.startsWith("hypervisor:index:"))) {
      const spec = schema.resources[r.type]!;
      for (const k of Object.keys(r.inputs)) expect(spec.inputProperties[k], k).toBeDefined();
    }
  });
});
