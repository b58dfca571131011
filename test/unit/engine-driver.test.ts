// Self-tests of the engine-protocol driver (lab/engine/engine.ts) and the mocks helper
// (lab/engine/mocks.ts), using a tiny file-writing dynamic provider defined here: no SSH needed.

import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  CheckFailedError,
  DynamicProviderPlugin,
  deleteWaves,
  Engine,
  PluginError,
  UNKNOWN,
  urnOf,
  type ResourceSpec,
} from "../../lab/engine/engine";
import { runProgramWithMocks } from "../../lab/engine/mocks";

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

type Props = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// The provider is serialized by pulumi's closure serializer and runs inside the plugin, so it
// captures nothing from this module: it requires what it needs inside its methods. Every call is
// appended to `<dir>/calls.log` so tests can see what the plugin received and in which order.
const fileProvider = {
  greeting: "",
  log(dir: unknown, entry: Props): void {
    if (typeof dir !== "string") return;
    require("fs").appendFileSync(
      require("path").join(dir, "calls.log"),
      JSON.stringify(entry) + "\n",
    );
  },
  async configure(req: { config: { get(key: string): string | undefined } }): Promise<void> {
    this.greeting = req.config.get("greeting") ?? "";
  },
  async check(olds: Props, news: Props) {
    this.log(news["dir"], { op: "check", olds, news });
    const failures: { property: string; reason: string }[] = [];
    const name = news["name"];
    if (name !== UNKNOWN_MARK && (typeof name !== "string" || !/^[a-z0-9-]+$/.test(name))) {
      failures.push({ property: "name", reason: "must match ^[a-z0-9-]+$" });
    }
    if (typeof news["dir"] !== "string") failures.push({ property: "dir", reason: "required" });
    return { inputs: { ...news, content: news["content"] ?? "default" }, failures };
  },
  async diff(id: string, olds: Props, news: Props) {
    this.log(news["dir"], { op: "diff", id, olds, news });
    if (news["noDiff"] === true) return {};
    const replaces = olds["name"] !== news["name"] ? ["name"] : [];
    const changed = replaces.length > 0 || olds["content"] !== news["content"];
    return { changes: changed, replaces, deleteBeforeReplace: news["dbr"] !== false };
  },
  async create(inputs: Props) {
    const fs = require("fs");
    const file = require("path").join(inputs["dir"], `${inputs["name"]}.txt`);
    this.log(inputs["dir"], { op: "create", inputs });
    process.stderr.write(`create ${inputs["name"]}\n`);
    if (inputs["helper"]) require(String(inputs["helper"]));
    if (inputs["gateCreate"] === true) await this.gate(inputs["dir"]);
    const content = String(inputs["content"] ?? "default");
    fs.writeFileSync(file, content);
    const outs = { ...inputs, path: file, greeting: this.greeting, written: content };
    if (inputs["failUnserializable"]) {
      // `undefined` cannot go into a protobuf Struct: the plugin fails while building the error.
      throw Object.assign(new Error("half done"), { id: file, properties: { x: undefined } });
    }
    if (inputs["failHalfway"]) {
      throw Object.assign(new Error("half done"), {
        id: file,
        properties: { ...outs, half: true },
        reasons: ["half done: second step failed"],
      });
    }
    if (inputs["failEarly"]) throw new Error("nothing created");
    return { id: file, outs };
  },
  // a gated call ends once the test has seen the calls it expects at once (the file `go`)
  async gate(dir: unknown): Promise<void> {
    const go = require("path").join(String(dir), "go");
    while (!require("fs").existsSync(go)) await new Promise((r) => setTimeout(r, 10));
  },
  async read(id: string, props: Props) {
    const fs = require("fs");
    this.log(props["dir"], { op: "read", id, props });
    if (props["gate"] === true) await this.gate(props["dir"]);
    if (props["failRead"] === true) throw new Error("read failed on purpose");
    if (!fs.existsSync(id)) return { id: "" };
    return { id, props: { ...props, written: fs.readFileSync(id, "utf8") } };
  },
  async update(id: string, olds: Props, news: Props) {
    this.log(news["dir"], { op: "update", id, olds, news });
    require("fs").writeFileSync(id, String(news["content"]));
    return { outs: { ...news, path: id, greeting: this.greeting, written: news["content"] } };
  },
  async delete(id: string, props: Props) {
    this.log(props["dir"], { op: "delete", id, props });
    if (props["gateDelete"] === true) await this.gate(props["dir"]);
    if (props["failDelete"] === true) throw new Error("delete failed on purpose");
    require("fs").rmSync(id, { force: true });
  },
};
// Captured by value into the serialized provider.
const UNKNOWN_MARK = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

async function serializedProvider(): Promise<string> {
  // What pulumi.dynamic.Resource does (dynamic/index.js serializeFunctionMaybeSecret).
  const sc = require("@pulumi/pulumi/runtime/closure/serializeClosure");
  const sf = await sc.serializeFunction(() => fileProvider, { allowSecrets: true });
  return sf.text as string;
}

const TYPE = "pulumi-nodejs:dynamic:File";

function calls(dir: string): Props[] {
  const file = path.join(dir, "calls.log");
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Props);
}

function clearCalls(dir: string): void {
  fs.rmSync(path.join(dir, "calls.log"), { force: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const tmpRoots: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "engine-driver-"));
  tmpRoots.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpRoots) fs.rmSync(d, { recursive: true, force: true });
});

describe("DynamicProviderPlugin", () => {
  let providerText: string;
  let plugin: DynamicProviderPlugin;
  let engineConnections = 0;
  let engineServer: net.Server;
  let dir: string;

  beforeAll(async () => {
    providerText = await serializedProvider();
    // A listening "engine": the plugin must never dial it for these calls.
    engineServer = net.createServer((s) => {
      engineConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => engineServer.listen(0, "127.0.0.1", r));
    const addr = engineServer.address() as net.AddressInfo;
    plugin = await DynamicProviderPlugin.start({ engineAddress: `127.0.0.1:${addr.port}` });
    dir = tmpDir();
  });
  afterAll(async () => {
    await plugin?.stop();
    await new Promise<void>((r) => engineServer.close(() => r()));
  });

  it("starts as a child process with a port and configures with namespaced config", async () => {
    expect(plugin.pid).toBeGreaterThan(0);
    expect(pidAlive(plugin.pid)).toBe(true);
    expect(plugin.port).toBeGreaterThan(0);
    await plugin.configure({ "test:greeting": "hello" });
    expect(plugin.acceptsSecrets).toBe(false);
  });

  it("Check returns checked inputs with __provider, and failures", async () => {
    const urn = urnOf(TYPE, "a");
    const ok = await plugin.check(urn, {}, { __provider: providerText, name: "a", dir });
    expect(ok.failures).toEqual([]);
    expect(ok.inputs).toEqual({ __provider: providerText, name: "a", dir, content: "default" });

    const bad = await plugin.check(urn, {}, { __provider: providerText, name: "Bad/Name" });
    expect(bad.failures).toEqual([
      { property: "name", reason: "must match ^[a-z0-9-]+$" },
      { property: "dir", reason: "required" },
    ]);

    // During preview an unknown value is the plain sentinel string.
    const unk = await plugin.check(urn, {}, { __provider: providerText, name: UNKNOWN, dir });
    expect(unk.failures).toEqual([]);
    expect(unk.inputs["name"]).toBe(UNKNOWN);
  });

  it("Create/Read/Diff/Update/Delete round-trip", async () => {
    const urn = urnOf(TYPE, "b");
    const inputs = { __provider: providerText, name: "b", dir, content: "one" };
    const created = await plugin.create(urn, inputs);
    expect(created.id).toBe(path.join(dir, "b.txt"));
    expect(created.properties).toMatchObject({ written: "one", greeting: "hello" });
    expect(created.properties["__provider"]).toBe(providerText);
    expect(fs.readFileSync(created.id, "utf8")).toBe("one");

    const read = await plugin.read(created.id, urn, created.properties, inputs);
    expect(read.id).toBe(created.id);
    expect(read.inputs).toBeUndefined();

    const same = await plugin.diff(created.id, urn, created.properties, inputs);
    expect(same).toEqual({ changes: "none", replaces: [], deleteBeforeReplace: true });
    const news = { ...inputs, content: "two" };
    const upd = await plugin.diff(created.id, urn, created.properties, news);
    expect(upd).toEqual({ changes: "some", replaces: [], deleteBeforeReplace: true });
    const rep = await plugin.diff(created.id, urn, created.properties, { ...inputs, name: "c" });
    expect(rep).toEqual({ changes: "some", replaces: ["name"], deleteBeforeReplace: true });
    const unknown = await plugin.diff(created.id, urn, created.properties, {
      ...inputs,
      noDiff: true,
    });
    expect(unknown.changes).toBe("unknown");

    const updated = await plugin.update(created.id, urn, created.properties, news);
    expect(updated.properties).toMatchObject({ written: "two", __provider: providerText });
    expect(fs.readFileSync(created.id, "utf8")).toBe("two");

    await plugin.delete(created.id, urn, updated.properties);
    expect(fs.existsSync(created.id)).toBe(false);
    const gone = await plugin.read(created.id, urn, updated.properties);
    expect(gone.id).toBe("");
    // Deleting what is already gone succeeds.
    await plugin.delete(created.id, urn, updated.properties);
  });

  it("a preview Create is answered without calling the plugin (no supportsPreview)", async () => {
    const sub = tmpDir();
    const urn = urnOf(TYPE, "p");
    const props = { __provider: providerText, name: "p", dir: sub, content: "x" };
    const res = await plugin.create(urn, props, { preview: true });
    expect(res).toEqual({ id: "", properties: props });
    expect(fs.existsSync(path.join(sub, "p.txt"))).toBe(false);
    expect(calls(sub)).toEqual([]);
  });

  it("Create errors: with an id they carry ErrorResourceInitFailed, without they do not", async () => {
    const urn = urnOf(TYPE, "half");
    const err = await plugin
      .create(urn, { __provider: providerText, name: "half", dir, failHalfway: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    const pe = err as PluginError;
    expect(pe.code).toBe(2); // grpc UNKNOWN
    expect(pe.message).toBe("half done");
    expect(pe.initFailed).toMatchObject({
      id: path.join(dir, "half.txt"),
      properties: { half: true, written: "default" },
      reasons: ["half done: second step failed"],
    });

    const early = await plugin
      .create(urnOf(TYPE, "early"), {
        __provider: providerText,
        name: "early",
        dir,
        failEarly: true,
      })
      .catch((e: unknown) => e);
    expect(early).toBeInstanceOf(PluginError);
    expect((early as PluginError).initFailed).toBeUndefined();
    expect((early as PluginError).message).toBe("nothing created");
  });

  it("an init-failed error whose properties hold undefined is never answered", async () => {
    // Plugin hazard: grpcResponseFromError throws in Struct.fromJavaScript, the rejection is only
    // logged, and the call hangs. Providers must never put undefined into error properties.
    const p = await DynamicProviderPlugin.start({ callTimeoutMs: 3000 });
    try {
      const sub = tmpDir();
      const err = await p
        .create(urnOf(TYPE, "u"), {
          __provider: providerText,
          name: "u",
          dir: sub,
          failUnserializable: true,
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PluginError);
      expect((err as PluginError).code).toBe(4); // DEADLINE_EXCEEDED
      expect(p.stderr()).toContain("Unexpected struct type");
    } finally {
      await p.stop();
    }
  });

  it("errors from Check/Diff/Read/Delete are PluginErrors and logged on stderr", async () => {
    const broken = "exports.handler = () => { throw new Error('no provider here'); };";
    const err = await plugin
      .check(urnOf(TYPE, "x"), {}, { __provider: broken, name: "x" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as PluginError).message).toBe("no provider here");
    expect(plugin.stderr()).toContain("no provider here");
  });

  it("captures the provider's stderr and never dials the engine address", () => {
    expect(plugin.stderr()).toContain("create b\n");
    expect(plugin.stdout()).toBe("");
    expect(engineConnections).toBe(0);
  });

  it("stop() kills the process by its pid", async () => {
    const p = await DynamicProviderPlugin.start();
    expect(pidAlive(p.pid)).toBe(true);
    await p.stop();
    expect(pidAlive(p.pid)).toBe(false);
    await p.stop(); // idempotent
    await expect(p.configure()).rejects.toThrow(/stopped/);
  });

  it("require() inside __provider resolves from the plugin's cwd", async () => {
    const cwd = tmpDir();
    fs.mkdirSync(path.join(cwd, "node_modules", "fake-helper"), { recursive: true });
    fs.writeFileSync(
      path.join(cwd, "node_modules", "fake-helper", "index.js"),
      "module.exports = 1;\n",
    );
    fs.writeFileSync(path.join(cwd, "local-helper.js"), "module.exports = 2;\n");
    const sub = tmpDir();
    const props = (name: string, helper: string): Props => ({
      __provider: providerText,
      name,
      dir: sub,
      helper,
    });
    const inCwd = await DynamicProviderPlugin.start({ cwd });
    try {
      await inCwd.create(urnOf(TYPE, "h1"), props("h1", "fake-helper"));
      await inCwd.create(urnOf(TYPE, "h2"), props("h2", "./local-helper.js"));
    } finally {
      await inCwd.stop();
    }
    // The same requires fail from another cwd.
    const elsewhere = await DynamicProviderPlugin.start({ cwd: os.tmpdir() });
    try {
      await expect(elsewhere.create(urnOf(TYPE, "h3"), props("h3", "fake-helper"))).rejects.toThrow(
        /Cannot find module 'fake-helper'/,
      );
    } finally {
      await elsewhere.stop();
    }
  });
});

describe("Engine", () => {
  let providerText: string;
  let plugin: DynamicProviderPlugin;
  let dir: string;

  beforeAll(async () => {
    providerText = await serializedProvider();
    plugin = await DynamicProviderPlugin.start();
  });
  afterAll(async () => {
    await plugin?.stop();
  });
  afterEach(() => {
    clearCalls(dir);
  });

  const spec = (name: string, extra: Props = {}, dependsOn?: string[]): ResourceSpec => ({
    type: TYPE,
    name,
    inputs: { __provider: providerText, name, dir, ...extra },
    ...(dependsOn ? { dependsOn } : {}),
  });
  const ops = (d: string): string[] =>
    calls(d).map((c) => `${c["op"]}:${c["news"]?.name ?? c["inputs"]?.name ?? c["props"]?.name}`);

  describe("lifecycle", () => {
    let engine: Engine;
    beforeAll(() => {
      dir = tmpDir();
      engine = new Engine(plugin);
    });

    it("preview of an empty state: Check only, nothing created", async () => {
      const res = await engine.preview([spec("b", {}, ["a"]), spec("a")]);
      expect(res.failures).toEqual({});
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["create:a", "create:b"]);
      expect(ops(dir)).toEqual(["check:a", "check:b"]);
      expect(engine.state.size).toBe(0);
      expect(fs.existsSync(path.join(dir, "a.txt"))).toBe(false);
    });

    it("up creates in dependency order after checking each", async () => {
      const res = await engine.up([spec("b", {}, ["a"]), spec("a")]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["create:a", "create:b"]);
      expect(ops(dir)).toEqual(["check:a", "create:a", "check:b", "create:b"]);
      const a = engine.state.get("a");
      expect(a).toMatchObject({
        urn: "urn:pulumi:test::test::pulumi-nodejs:dynamic:File::a",
        id: path.join(dir, "a.txt"),
        inputs: { name: "a", content: "default" },
        outputs: { name: "a", written: "default", path: path.join(dir, "a.txt") },
      });
      // Create got the checked inputs (with the default filled in by Check).
      expect(calls(dir)[1]?.["inputs"]).toEqual(a?.inputs);
    });

    it("a second up is all same; Check got old inputs, Diff got old outputs", async () => {
      const res = await engine.up([spec("b", {}, ["a"]), spec("a")]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:a", "same:b"]);
      const c = calls(dir);
      expect(c.map((x) => x["op"])).toEqual(["check", "diff", "check", "diff"]);
      const a = engine.state.get("a")!;
      expect(c[0]?.["olds"]).toEqual(a.inputs);
      expect(c[1]?.["olds"]).toEqual(a.outputs);
      expect(c[1]?.["olds"]).toHaveProperty("written");
      expect(c[1]?.["news"]).toEqual(a.inputs);
      expect(c[1]?.["id"]).toBe(a.id);
    });

    it("an in-place change is an Update with olds = outputs and news = checked inputs", async () => {
      const before = engine.state.get("a")!;
      const res = await engine.up([spec("b", {}, ["a"]), spec("a", { content: "v2" })]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["update:a", "same:b"]);
      const upd = calls(dir).find((x) => x["op"] === "update")!;
      expect(upd["olds"]).toEqual(before.outputs);
      expect(upd["news"]).toEqual({ ...before.inputs, content: "v2" });
      expect(engine.state.get("a")?.outputs["written"]).toBe("v2");
      expect(fs.readFileSync(path.join(dir, "a.txt"), "utf8")).toBe("v2");
    });

    it("a DIFF_UNKNOWN answer falls back to comparing inputs", async () => {
      let res = await engine.up([spec("b", { noDiff: true }, ["a"]), spec("a", { content: "v2" })]);
      // inputs changed (noDiff was added) -> update
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:a", "update:b"]);
      res = await engine.up([spec("b", { noDiff: true }, ["a"]), spec("a", { content: "v2" })]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:a", "same:b"]);
      // Back without noDiff: the provider's own diff answers DIFF_NONE again.
      res = await engine.up([spec("b", {}, ["a"]), spec("a", { content: "v2" })]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:a", "same:b"]);
    });

    it("preview shows update/replace/delete without mutating anything", async () => {
      const stateBefore = JSON.stringify([...engine.state]);
      const res = await engine.preview([spec("a", { content: "v3" })]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["update:a", "delete:b"]);
      const res2 = await engine.preview([
        {
          ...spec("a", { content: "v2" }),
          inputs: { ...spec("a").inputs, name: "a2", content: "v2" },
        },
        spec("b", {}, ["a"]),
      ]);
      expect(res2.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["replace:a", "same:b"]);
      expect(res2.steps[0]?.detail).toMatchObject({
        replaces: ["name"],
        deleteBeforeReplace: true,
      });
      expect(
        calls(dir)
          .map((c) => c["op"])
          .filter((o) => o !== "check" && o !== "diff"),
      ).toEqual([]);
      expect(JSON.stringify([...engine.state])).toBe(stateBefore);
    });

    it("check failures: preview reports them, up throws before creating", async () => {
      const bad = spec("c", { name: "Not Valid" });
      const pv = await engine.preview([spec("a", { content: "v2" }), spec("b", {}, ["a"]), bad]);
      expect(pv.failures).toEqual({ c: [{ property: "name", reason: "must match ^[a-z0-9-]+$" }] });
      const err = await engine
        .up([spec("a", { content: "v2" }), spec("b", {}, ["a"]), bad])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckFailedError);
      expect((err as CheckFailedError).failures).toEqual({
        c: [{ property: "name", reason: "must match ^[a-z0-9-]+$" }],
      });
      expect(ops(dir).filter((o) => o.startsWith("create"))).toEqual([]);
      expect(engine.state.has("c")).toBe(false);
    });

    it("delete-before-replace: Delete, then Create with inputs re-checked without olds", async () => {
      const oldA = engine.state.get("a")!;
      const renamed: ResourceSpec = {
        type: TYPE,
        name: "a",
        inputs: { __provider: providerText, name: "a-new", dir, content: "v2" },
      };
      const res = await engine.up([renamed, spec("b", {}, ["a"])]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["replace:a", "same:b"]);
      const c = calls(dir);
      expect(c.map((x) => x["op"])).toEqual([
        "check",
        "diff",
        "check",
        "delete",
        "create",
        "check",
        "diff",
      ]);
      expect(c[2]?.["olds"]).toEqual({});
      expect(c[3]?.["id"]).toBe(oldA.id);
      expect(c[3]?.["props"]).toEqual(oldA.outputs);
      expect(fs.existsSync(oldA.id)).toBe(false);
      expect(engine.state.get("a")?.id).toBe(path.join(dir, "a-new.txt"));
    });

    it("create-before-delete: the old one is deleted at the end, after other resources", async () => {
      const oldA = engine.state.get("a")!;
      const renamed: ResourceSpec = {
        type: TYPE,
        name: "a",
        inputs: { __provider: providerText, name: "a-cbd", dir, content: "v2", dbr: false },
      };
      const res = await engine.up([renamed, spec("b", {}, ["a"])]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["replace:a", "same:b"]);
      expect(ops(dir)).toEqual([
        "check:a-cbd",
        "diff:a-cbd",
        "check:a-cbd",
        "create:a-cbd",
        "check:b",
        "diff:b",
        "delete:a-new",
      ]);
      expect(fs.existsSync(oldA.id)).toBe(false);
      expect(engine.pendingDeletes).toEqual([]);
    });

    it("resources dropped from the program are deleted in reverse dependency order", async () => {
      await engine.up([
        spec("a", { name: "a-cbd", content: "v2", dbr: false }),
        spec("b", {}, ["a"]),
        spec("d", {}, ["b"]),
      ]);
      clearCalls(dir);
      const res = await engine.up([]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual([
        "delete:d",
        "delete:b",
        "delete:a",
      ]);
      expect(engine.state.size).toBe(0);
    });
  });

  describe("refresh, destroy and partial failures", () => {
    let engine: Engine;
    beforeAll(() => {
      dir = tmpDir();
      engine = new Engine(plugin);
    });

    it("refresh: unchanged, drifted and gone", async () => {
      await engine.up([spec("r1"), spec("r2"), spec("r3")]);
      clearCalls(dir);
      fs.writeFileSync(path.join(dir, "r2.txt"), "drifted");
      fs.rmSync(path.join(dir, "r3.txt"));
      const res = await engine.refresh();
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toEqual([
        "same:r1",
        "refresh-changed:r2",
        "refresh-gone:r3",
      ]);
      expect(engine.state.get("r2")?.outputs["written"]).toBe("drifted");
      expect(engine.state.has("r3")).toBe(false);
      const read = calls(dir)[0]!;
      expect(read["op"]).toBe("read");
      expect(read["props"]).toHaveProperty("written"); // Read gets the outputs
      // The next up recreates the gone resource and leaves the others alone.
      const up = await engine.up([spec("r1"), spec("r2"), spec("r3")]);
      expect(up.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:r1", "same:r2", "create:r3"]);
    });

    it("refresh reads every resource at once, as the engine does, and keeps the reads that ended well", async () => {
      const gated = await engine.up([
        spec("g1", { gate: true }),
        spec("g2", { gate: true }),
        spec("g3", { gate: true, failRead: true }),
      ]);
      // (the previous test's resources go: this up does not name them)
      expect(gated.steps.filter((s) => s.op === "create").map((s) => s.name)).toEqual([
        "g1",
        "g2",
        "g3",
      ]);
      clearCalls(dir);
      fs.writeFileSync(path.join(dir, "g2.txt"), "drifted");
      const refreshed = engine.refresh().catch((e: unknown) => e);
      // one read after another would leave the first waiting for `go` alone
      let started = 0;
      for (let t = Date.now(); Date.now() - t < 10_000 && started < 3;) {
        await new Promise((r) => setTimeout(r, 20));
        started = calls(dir).filter((c) => c["op"] === "read").length;
      }
      fs.writeFileSync(path.join(dir, "go"), "");
      const err = await refreshed;
      expect(started).toBe(3);
      expect(err).toBeInstanceOf(PluginError);
      expect(String(err)).toContain("read failed on purpose");
      // the reads that ended well are taken: g2's drift is in the state
      expect(engine.state.get("g2")?.outputs["written"]).toBe("drifted");
      expect(engine.state.get("g3")?.outputs["written"]).toBe("default");
      fs.rmSync(path.join(dir, "go"));
      await engine.destroy();
      expect(engine.state.size).toBe(0);
    });

    it("refresh one at a time sends each read once the one before has ended", async () => {
      await engine.up([spec("s1", { gate: true }), spec("s2", { gate: true })]);
      clearCalls(dir);
      const refreshed = engine.refresh({ oneAtATime: true });
      const reads = () => calls(dir).filter((c) => c["op"] === "read").length;
      // the first read has started (a busy machine may take a while), and no second one follows
      for (let t = Date.now(); Date.now() - t < 10_000 && reads() === 0;) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300));
      const startedBeforeGo = reads();
      fs.writeFileSync(path.join(dir, "go"), "");
      const { steps } = await refreshed;
      expect(startedBeforeGo).toBe(1);
      expect(steps.map((s) => `${s.op}:${s.name}`)).toEqual(["same:s1", "same:s2"]);
      expect(reads()).toBe(2);
      fs.rmSync(path.join(dir, "go"));
      await engine.destroy();
    });

    it("a half-done create is recorded with its id; the next up sends Update", async () => {
      const err = await engine
        .up([spec("r1"), spec("half", { failHalfway: true })])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PluginError);
      const half = engine.state.get("half");
      expect(half).toMatchObject({
        id: path.join(dir, "half.txt"),
        outputs: { half: true },
        initErrors: ["half done: second step failed"],
      });
      clearCalls(dir);
      const res = await engine.up([spec("r1"), spec("half", { failHalfway: true })]);
      expect(res.steps.map((s) => `${s.op}:${s.name}`)).toContain("update:half");
      expect(ops(dir)).toContain("update:half");
      expect(engine.state.get("half")?.initErrors).toBeUndefined();
    });

    it("destroy deletes everything, dependents first", async () => {
      await engine.up([spec("r1"), spec("r2", {}, ["r3"]), spec("r3")]);
      clearCalls(dir);
      const res = await engine.destroy();
      expect(res.steps.map((s) => s.name)).toEqual(["r2", "r3", "r1"]);
      expect(engine.state.size).toBe(0);
      expect(fs.readdirSync(dir).filter((f) => f.endsWith(".txt"))).toEqual([]);
    });

    // Waits (up to 10 s: a busy machine) until `cond` holds, then 300 ms more for what must not come.
    const settle = async (cond: () => boolean): Promise<void> => {
      for (let t = Date.now(); Date.now() - t < 10_000 && !cond();) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300));
    };
    const started = (op: string): string[] =>
      ops(dir)
        .filter((o) => o.startsWith(`${op}:`))
        .map((o) => o.slice(op.length + 1));

    it("up at once: independent creates run together, a dependent's Check waits for its dependency", async () => {
      const up = engine.up(
        [
          spec("p1", { gateCreate: true }),
          spec("p2", { gateCreate: true }),
          spec("p3", {}, ["p1"]),
        ],
        { atOnce: true },
      );
      await settle(() => started("create").length >= 2);
      const before = { creates: started("create"), checks: started("check") };
      fs.writeFileSync(path.join(dir, "go"), "");
      const { steps } = await up;
      expect({ creates: before.creates.sort(), checks: before.checks.sort() }).toEqual({
        creates: ["p1", "p2"],
        checks: ["p1", "p2"],
      });
      expect(steps.map((s) => `${s.op}:${s.name}`).sort()).toEqual([
        "create:p1",
        "create:p2",
        "create:p3",
      ]);
      expect(ops(dir).indexOf("check:p3")).toBeGreaterThan(ops(dir).indexOf("create:p1"));
      fs.rmSync(path.join(dir, "go"));
      await engine.destroy({ atOnce: true });
      expect(engine.state.size).toBe(0);
    });

    it("up at once: after a failure no step starts, the running ones end and are kept", async () => {
      const up = engine
        .up(
          [
            spec("f1", { gateCreate: true }),
            spec("f2", { failEarly: true }),
            spec("f3", {}, ["f1"]),
          ],
          { atOnce: true },
        )
        .catch((e: unknown) => e);
      await settle(() => started("create").includes("f2"));
      const before = started("create");
      fs.writeFileSync(path.join(dir, "go"), "");
      const err = await up;
      expect(before.sort()).toEqual(["f1", "f2"]);
      expect(err).toBeInstanceOf(PluginError);
      expect(String(err)).toContain("nothing created");
      // f1 was running when f2 failed: it ended and is in the state; f3, free to go once f1
      // was done, never started
      expect([...engine.state.keys()]).toEqual(["f1"]);
      expect(started("check")).not.toContain("f3");
      fs.rmSync(path.join(dir, "go"));
      await engine.destroy({ atOnce: true });
    });

    it("destroy at once runs the engine's waves: a wave starts once the one before has ended", async () => {
      await engine.up([
        spec("w1"),
        spec("w2", { gateDelete: true }, ["w3"]),
        spec("w3"),
        spec("w4", {}, ["w3"]),
      ]);
      clearCalls(dir);
      const destroyed = engine.destroy({ atOnce: true });
      // w2 and w4 go first; w1 depends on nothing and still waits for the wave before it
      await settle(() => started("delete").length >= 2);
      const before = started("delete");
      fs.writeFileSync(path.join(dir, "go"), "");
      const { steps } = await destroyed;
      expect(before.sort()).toEqual(["w2", "w4"]);
      expect(
        steps
          .slice(0, 2)
          .map((s) => s.name)
          .sort(),
      ).toEqual(["w2", "w4"]);
      expect(
        steps
          .slice(2)
          .map((s) => s.name)
          .sort(),
      ).toEqual(["w1", "w3"]);
      expect(engine.state.size).toBe(0);
      fs.rmSync(path.join(dir, "go"));
    });

    it("destroy at once: a failed delete keeps its resource and ends the waves after its own", async () => {
      await engine.up([
        spec("d1", { failDelete: true }, ["d2"]),
        spec("d2"),
        spec("d3", {}, ["d2"]),
      ]);
      clearCalls(dir);
      const err = await engine.destroy({ atOnce: true }).catch((e: unknown) => e);
      expect(String(err)).toContain("delete failed on purpose");
      expect(started("delete").sort()).toEqual(["d1", "d3"]);
      expect([...engine.state.keys()].sort()).toEqual(["d1", "d2"]);
      // the state keeps d1 with its failing input; take it out of the state to clean up
      engine.state.delete("d1");
      fs.rmSync(path.join(dir, "d1.txt"));
      await engine.destroy();
      expect(engine.state.size).toBe(0);
    });
  });
});

describe("deleteWaves", () => {
  const r = (name: string, dependsOn: string[] = []) => ({ name, dependsOn });
  it("puts dependents first and what nothing depends on with the last wave it can join", () => {
    const waves = deleteWaves([r("a"), r("b", ["c"]), r("c"), r("d", ["c"]), r("e", ["d"])]);
    expect(waves.map((w) => w.map((s) => s.name))).toEqual([["e"], ["b", "d"], ["a", "c"]]);
  });
  it("a replaced resource and its replacement share a name: both wait for their dependents", () => {
    const waves = deleteWaves([r("x"), r("x"), r("y", ["x"])]);
    expect(waves.map((w) => w.map((s) => s.name))).toEqual([["y"], ["x", "x"]]);
  });
});

class FileResource extends pulumi.dynamic.Resource {
  constructor(
    name: string,
    props: pulumi.Inputs,
    opts?: pulumi.CustomResourceOptions,
    module?: string,
    type?: string,
  ) {
    super(fileProvider, name, props, opts, module, type);
  }
}

describe("runProgramWithMocks", () => {
  const program = (dir: string) => () => {
    const a = new FileResource("m1", { name: "m1", dir, content: "c" });
    new FileResource(
      "m2",
      {
        name: a.id.apply((id) => `m2-${id.length}`),
        dir,
        password: pulumi.secret("hunter2"),
      },
      { dependsOn: [a] },
      "mod",
      "Thing",
    );
  };

  it("captures resources with resolved __provider and secret keys; can run twice", async () => {
    const dir = tmpDir();
    const first = await runProgramWithMocks(program(dir));
    const second = await runProgramWithMocks(program(dir), { project: "other", stack: "dev" });
    for (const run of [first, second]) {
      expect(run.map((r) => [r.type, r.name])).toEqual([
        ["pulumi-nodejs:dynamic:Resource", "m1"],
        ["pulumi-nodejs:dynamic/mod:Thing", "m2"],
      ]);
      expect(run[0]?.secretKeys).toEqual([]);
      expect(run[1]?.secretKeys).toEqual(["password"]);
      expect(run[1]?.inputs).toMatchObject({ name: "m2-5", password: "hunter2" });
      expect(typeof run[0]?.inputs["__provider"]).toBe("string");
    }
    expect(second[0]?.inputs["__provider"]).toBe(first[0]?.inputs["__provider"]);
  });

  it("captures each resource's dependencies: its inputs' resources and dependsOn", async () => {
    const dir = tmpDir();
    const run = await runProgramWithMocks(() => {
      const a = new FileResource("n1", { name: "n1", dir });
      const b = new FileResource("n2", { name: a.id.apply((id) => `n2-${id.length}`), dir });
      new FileResource("n3", { name: "n3", dir }, { dependsOn: [a, b] });
      new FileResource("n4", { name: "n4", dir });
    });
    // in the order they registered: n4 does not wait for n1's id
    expect(run.map((r) => [r.name, r.dependsOn])).toEqual([
      ["n1", []],
      ["n4", []],
      ["n2", ["n1"]],
      ["n3", ["n1", "n2"]],
    ]);
  });

  it("a failing program rejects and leaves the next run unaffected", async () => {
    await expect(
      runProgramWithMocks(() => {
        new FileResource("x1", { name: "x1" });
        throw new Error("program broke");
      }),
    ).rejects.toThrow(/program broke/);
    const next = await runProgramWithMocks(() => {
      new FileResource("x2", { name: "x2" });
    });
    expect(next.map((r) => r.name)).toEqual(["x2"]);
  });

  it("passes config through pulumi.Config", async () => {
    const seen: string[] = [];
    await runProgramWithMocks(
      () => {
        seen.push(new pulumi.Config().require("host"), pulumi.getProject(), pulumi.getStack());
      },
      { project: "proj", config: { "proj:host": "198.18.0.2" } },
    );
    await runProgramWithMocks(() => {
      seen.push(new pulumi.Config().get("host") ?? "<none>");
    });
    expect(seen).toEqual(["198.18.0.2", "proj", "test", "<none>"]);
  });

  it("the captured program drives the plugin through the engine", async () => {
    const dir = tmpDir();
    const captured = await runProgramWithMocks(program(dir));
    const plugin = await DynamicProviderPlugin.start();
    try {
      const engine = new Engine(plugin);
      const specs: ResourceSpec[] = captured.map((r, i) => ({
        type: r.type,
        name: r.name,
        inputs: r.inputs,
        ...(i > 0 ? { dependsOn: [captured[0]!.name] } : {}),
      }));
      const up = await engine.up(specs);
      expect(up.steps.map((s) => `${s.op}:${s.name}`)).toEqual(["create:m1", "create:m2"]);
      expect(fs.readFileSync(path.join(dir, "m1.txt"), "utf8")).toBe("c");
      expect(fs.existsSync(path.join(dir, "m2-5.txt"))).toBe(true);
      // Secrets reach the plugin as plain values (acceptSecrets=false); the provider does not log them.
      expect(engine.state.get("m2")?.outputs["password"]).toBe("hunter2");
      expect(plugin.stderr()).toContain("create m1\n");
      expect(plugin.stderr()).not.toContain("hunter2");
      const down = await engine.destroy();
      expect(down.steps.map((s) => s.name)).toEqual(["m2", "m1"]);
    } finally {
      await plugin.stop();
    }
  });
});

describe("unknowns in the driver, as in the engine", () => {
  it("an up refuses unknown inputs: the engine resolves them before an update", async () => {
    const engine = new Engine(undefined as unknown as DynamicProviderPlugin);
    await expect(engine.up([{ type: "t", name: "x", inputs: { name: UNKNOWN } }])).rejects.toThrow(
      /up: x has unknown inputs \(preview only\)/,
    );
  });
});
