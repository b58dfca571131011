// Engine-protocol driver for the native plugin (provider/bin/pulumi-resource-hypervisor), in the
// style of engine.ts, whose Engine it reuses for up/refresh/destroy.
//
// What is mirrored from the engine (github.com/pulumi/pulumi, pkg/resource/deploy/providers and
// sdk/go/common/resource/plugin/provider_plugin.go):
//  - every provider resource (and the default provider) is its own plugin process: Handshake, then
//    CheckConfig (news = the provider's inputs), DiffConfig against the previous inputs when the
//    provider existed, then Configure with `args` (secrets kept, since the plugin accepts them) and
//    the legacy `variables` map (`hypervisor:config:<key>`, objects JSON-encoded);
//  - Create/Update with preview=true are sent because Configure answered supportsPreview;
//  - Read with no properties and no inputs is an import (`pulumi import`): the answer's inputs are
//    what the program should say;
//  - a provider whose DiffConfig asks for a replace replaces every resource it serves (here: they
//    are destroyed through the old provider and created again by the next `up`).
// Simplifications: dependsOn only between resources of the same provider.

import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct, type JavaScriptValue } from "google-protobuf/google/protobuf/struct_pb";
import { unwrapSecrets } from "../../provider/src/native/wire";
import {
  CheckFailedError,
  Engine,
  PluginError,
  TEST_PROJECT,
  TEST_STACK,
  urnOf,
  type CheckFailure,
  type DynamicProviderPlugin,
  type ResourceSpec,
  type ResourceState,
  type StepRecord,
} from "./engine";

export {
  CheckFailedError,
  PluginError,
  urnOf,
  type CheckFailure,
  type ResourceState,
  type StepRecord,
};
export { secret, isSecret, UNKNOWN } from "../../provider/src/native/wire";

type Props = Record<string, unknown>;

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
/** The plugin as Pulumi finds it through `plugins.providers` in Pulumi.yaml. */
export const NATIVE_PLUGIN = path.join(REPO_ROOT, "provider", "bin", "pulumi-resource-hypervisor");

export type PropertyDiffKind =
  "ADD" | "ADD_REPLACE" | "DELETE" | "DELETE_REPLACE" | "UPDATE" | "UPDATE_REPLACE";

export interface DetailedDiff {
  changes: "some" | "none" | "unknown";
  replaces: string[];
  deleteBeforeReplace: boolean;
  diffs: string[];
  hasDetailedDiff: boolean;
  detailedDiff: Record<string, PropertyDiffKind>;
}

const KIND_NAMES: Record<number, PropertyDiffKind> = Object.fromEntries(
  Object.entries(provproto.PropertyDiff.Kind).map(([k, v]) => [v, k as PropertyDiffKind]),
);

function toWire(value: unknown): unknown {
  if (value === undefined) return null;
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(toWire);
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, toWire(v)]),
  );
}

function struct(props: Props): Struct {
  return Struct.fromJavaScript(toWire(props) as Record<string, JavaScriptValue>);
}

function fromStruct(s: Struct | undefined): Props {
  return s === undefined ? {} : s.toJavaScript();
}

function nameOfUrn(urn: string): string {
  return urn.split("::").slice(3).join("::");
}

function typeOfUrn(urn: string): string {
  return urn.split("::")[2] ?? "";
}

function pluginError(method: string, err: grpc.ServiceError): PluginError {
  let initFailed: { id: string; properties: Props; reasons: string[] } | undefined;
  for (const raw of err.metadata?.get("grpc-status-details-bin") ?? []) {
    const bytes = typeof raw === "string" ? Buffer.from(raw, "base64") : raw;
    for (const any of statusproto.Status.deserializeBinary(
      new Uint8Array(bytes),
    ).getDetailsList()) {
      const d = any.unpack(
        (b) => provproto.ErrorResourceInitFailed.deserializeBinary(b),
        "pulumirpc.ErrorResourceInitFailed",
      );
      if (d)
        initFailed = {
          id: d.getId(),
          properties: fromStruct(d.getProperties()),
          reasons: d.getReasonsList(),
        };
    }
  }
  return new PluginError(method, err.code, err.details || err.message, initFailed);
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of running)
    if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, "SIGKILL");
});

/** One native plugin process, configured (at most) once, as the engine runs one per provider. */
export class NativeProviderPlugin {
  private stderrText = "";
  private readonly client: provrpc.ResourceProviderClient;
  private stopped = false;
  /** What Configure answered. */
  supportsPreview = false;
  acceptsSecrets = false;
  /** The provider's name (for its URN). */
  name = "default";

  private constructor(
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    readonly port: number,
    stderrSoFar: string,
  ) {
    this.stderrText = stderrSoFar;
    child.stderr?.on("data", (d: Buffer) => (this.stderrText += d.toString("utf8")));
    this.client = new provrpc.ResourceProviderClient(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    );
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Spawns the plugin with an engine address argument and reads the port it prints. */
  static async start(
    opts: { cwd?: string; env?: NodeJS.ProcessEnv; plugin?: string } = {},
  ): Promise<NativeProviderPlugin> {
    const env = { ...(opts.env ?? process.env) };
    env["PULUMI_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_STACK"] ??= TEST_STACK;
    const child = spawn(opts.plugin ?? NATIVE_PLUGIN, ["127.0.0.1:1"], {
      cwd: opts.cwd ?? REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    running.add(child);
    const exited = new Promise<void>((resolve) =>
      child.once("exit", () => {
        running.delete(child);
        resolve();
      }),
    );
    let out = "";
    let err = "";
    const onErr = (d: Buffer): void => {
      err += d.toString("utf8");
    };
    child.stderr.on("data", onErr);
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`native plugin printed no port; stderr: ${err}`)),
          30_000,
        );
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString("utf8");
          const nl = out.indexOf("\n");
          if (nl < 0) return;
          clearTimeout(timer);
          const p = Number(out.slice(0, nl));
          if (Number.isInteger(p) && p > 0) resolve(p);
          else reject(new Error(`native plugin printed ${JSON.stringify(out)} instead of a port`));
        });
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`native plugin exited (${code}) before its port; ${err}`));
        });
      });
      child.stderr.off("data", onErr);
      return new NativeProviderPlugin(child, exited, port, err);
    } catch (e) {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
      await exited;
      throw e;
    }
  }

  /** Everything the plugin wrote to stderr (its log). */
  stderr(): string {
    return this.stderrText;
  }

  /** Everything the plugin wrote to stdout: only its port line. */
  private unary<Res>(
    method: string,
    invoke: (
      md: grpc.Metadata,
      cb: (err: grpc.ServiceError | null, res: Res) => void,
    ) => grpc.ClientUnaryCall,
  ): Promise<Res> {
    if (this.stopped) return Promise.reject(new Error(`${method}: plugin stopped`));
    return new Promise<Res>((resolve, reject) =>
      invoke(new grpc.Metadata(), (err, res) =>
        err ? reject(pluginError(method, err)) : resolve(res),
      ),
    );
  }

  async handshake(): Promise<{ acceptSecrets: boolean; acceptResources: boolean }> {
    const req = new provproto.ProviderHandshakeRequest();
    req.setEngineAddress("127.0.0.1:1");
    req.setRootDirectory(REPO_ROOT);
    req.setProgramDirectory(REPO_ROOT);
    req.setConfigureWithUrn(true);
    const res = await this.unary<provproto.ProviderHandshakeResponse>("Handshake", (md, cb) =>
      this.client.handshake(req, md, cb),
    );
    return { acceptSecrets: res.getAcceptSecrets(), acceptResources: res.getAcceptResources() };
  }

  async getSchema(): Promise<string> {
    const req = new provproto.GetSchemaRequest();
    const res = await this.unary<provproto.GetSchemaResponse>("GetSchema", (md, cb) =>
      this.client.getSchema(req, md, cb),
    );
    return res.getSchema();
  }

  async getPluginInfo(): Promise<{ version: string }> {
    const res = await this.unary<{ getVersion(): string }>("GetPluginInfo", (md, cb) =>
      this.client.getPluginInfo(new Empty(), md, cb),
    );
    return { version: res.getVersion() };
  }

  async cancel(): Promise<void> {
    await this.unary("Cancel", (md, cb) => this.client.cancel(new Empty(), md, cb));
  }

  private providerUrn(): string {
    return urnOf("pulumi:providers:hypervisor", this.name);
  }

  async checkConfig(
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    const req = new provproto.CheckRequest();
    req.setUrn(this.providerUrn());
    req.setName(this.name);
    req.setType("pulumi:providers:hypervisor");
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    const res = await this.unary<provproto.CheckResponse>("CheckConfig", (md, cb) =>
      this.client.checkConfig(req, md, cb),
    );
    return {
      inputs: fromStruct(res.getInputs()),
      failures: res
        .getFailuresList()
        .map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
    };
  }

  async diffConfig(olds: Props, news: Props, oldInputs?: Props): Promise<DetailedDiff> {
    const req = new provproto.DiffRequest();
    req.setUrn(this.providerUrn());
    req.setName(this.name);
    req.setType("pulumi:providers:hypervisor");
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs) req.setOldInputs(struct(oldInputs));
    const res = await this.unary<provproto.DiffResponse>("DiffConfig", (md, cb) =>
      this.client.diffConfig(req, md, cb),
    );
    return detailedDiffOf(res);
  }

  /** Configure as the engine does: `args` with secrets, and `variables` as strings. */
  async configure(args: Props): Promise<void> {
    const req = new provproto.ConfigureRequest();
    const vars = req.getVariablesMap();
    for (const [k, v] of Object.entries(unwrapSecrets(args) as Props)) {
      if (v !== undefined)
        vars.set(`hypervisor:config:${k}`, typeof v === "string" ? v : JSON.stringify(v));
    }
    req.setArgs(struct(args));
    req.setAcceptsecrets(true);
    req.setAcceptresources(true);
    req.setSendsOldInputs(true);
    req.setSendsOldInputsToDelete(true);
    req.setType("pulumi:providers:hypervisor");
    req.setName(this.name);
    req.setUrn(this.providerUrn());
    req.setId("00000000-0000-0000-0000-000000000000");
    const res = await this.unary<provproto.ConfigureResponse>("Configure", (md, cb) =>
      this.client.configure(req, md, cb),
    );
    this.supportsPreview = res.getSupportspreview();
    this.acceptsSecrets = res.getAcceptsecrets();
  }

  async check(
    urn: string,
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    const req = new provproto.CheckRequest();
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    const res = await this.unary<provproto.CheckResponse>("Check", (md, cb) =>
      this.client.check(req, md, cb),
    );
    return {
      inputs: fromStruct(res.getInputs()),
      failures: res
        .getFailuresList()
        .map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
    };
  }

  async diff(
    id: string,
    urn: string,
    olds: Props,
    news: Props,
    oldInputs?: Props,
  ): Promise<DetailedDiff> {
    const req = new provproto.DiffRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    const res = await this.unary<provproto.DiffResponse>("Diff", (md, cb) =>
      this.client.diff(req, md, cb),
    );
    return detailedDiffOf(res);
  }

  async create(
    urn: string,
    properties: Props,
    opts: { preview?: boolean } = {},
  ): Promise<{ id: string; properties: Props }> {
    const req = new provproto.CreateRequest();
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    req.setPreview(opts.preview === true);
    const res = await this.unary<provproto.CreateResponse>("Create", (md, cb) =>
      this.client.create(req, md, cb),
    );
    if (res.getId() === "" && opts.preview !== true) {
      throw new PluginError(
        "Create",
        grpc.status.UNKNOWN,
        `plugin returned empty ID from create '${urn}'`,
      );
    }
    return { id: res.getId(), properties: fromStruct(res.getProperties()) };
  }

  async read(
    id: string,
    urn: string,
    properties: Props,
    inputs?: Props,
  ): Promise<{ id: string; properties: Props; inputs?: Props }> {
    const req = new provproto.ReadRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    if (inputs !== undefined) req.setInputs(struct(inputs));
    const res = await this.unary<provproto.ReadResponse>("Read", (md, cb) =>
      this.client.read(req, md, cb),
    );
    const out: { id: string; properties: Props; inputs?: Props } = {
      id: res.getId(),
      properties: fromStruct(res.getProperties()),
    };
    if (res.hasInputs()) out.inputs = fromStruct(res.getInputs());
    return out;
  }

  async update(
    id: string,
    urn: string,
    olds: Props,
    news: Props,
    oldInputs?: Props,
    opts: { preview?: boolean } = {},
  ): Promise<{ properties: Props }> {
    const req = new provproto.UpdateRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    req.setPreview(opts.preview === true);
    const res = await this.unary<provproto.UpdateResponse>("Update", (md, cb) =>
      this.client.update(req, md, cb),
    );
    return { properties: fromStruct(res.getProperties()) };
  }

  async delete(id: string, urn: string, properties: Props, oldInputs?: Props): Promise<void> {
    const req = new provproto.DeleteRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    await this.unary("Delete", (md, cb) => this.client.delete(req, md, cb));
  }

  /** Closes the client and ends the plugin by its pid (SIGTERM, SIGKILL after 5 s). */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.client.close();
    }
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    process.kill(this.pid, "SIGTERM");
    const timer = setTimeout(() => {
      if (this.child.exitCode === null) process.kill(this.pid, "SIGKILL");
    }, 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

function detailedDiffOf(res: provproto.DiffResponse): DetailedDiff {
  const c = res.getChanges();
  const detailedDiff: Record<string, PropertyDiffKind> = {};
  res.getDetaileddiffMap().forEach((pd: provproto.PropertyDiff, k: string) => {
    detailedDiff[k] = KIND_NAMES[pd.getKind()] ?? "UPDATE";
  });
  return {
    changes:
      c === provproto.DiffResponse.DiffChanges.DIFF_SOME
        ? "some"
        : c === provproto.DiffResponse.DiffChanges.DIFF_NONE
          ? "none"
          : "unknown",
    replaces: res.getReplacesList(),
    deleteBeforeReplace: res.getDeletebeforereplace(),
    diffs: res.getDiffsList(),
    hasDetailedDiff: res.getHasdetaileddiff(),
    detailedDiff,
  };
}

/** A resource of the native package: `type` is the token, `provider` names a provider (default "default"). */
export interface NativeResourceSpec extends ResourceSpec {
  provider?: string;
}

/** A preview step with what the provider would do (`plannedSteps`) and its detailed diff. */
export interface NativeStepRecord extends StepRecord {
  provider: string;
  plannedSteps?: string[];
  properties?: Props;
  diff?: DetailedDiff;
}

interface ProviderEntry {
  plugin: NativeProviderPlugin;
  engine: Engine;
  inputs: Props;
}

/** An in-memory engine over one native plugin process per provider. */
export class NativeEngine {
  private readonly providers = new Map<string, ProviderEntry>();
  private readonly retiredLogs: string[] = [];

  constructor(private readonly opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {}

  /**
   * Registers a provider (name "default" is the default provider, configured from stack config)
   * or changes its configuration: CheckConfig, DiffConfig, then a fresh plugin is configured.
   * A change of host destroys its resources through the old provider (the next up recreates them).
   */
  async provider(name: string, inputs: Props): Promise<{ diff?: DetailedDiff; replaced: boolean }> {
    const old = this.providers.get(name);
    const plugin = await NativeProviderPlugin.start(this.opts);
    plugin.name = name;
    try {
      await plugin.handshake();
      const checked = await plugin.checkConfig(old ? old.inputs : {}, inputs);
      if (checked.failures.length > 0) throw new CheckFailedError({ [name]: checked.failures });
      let diff: DetailedDiff | undefined;
      if (old) diff = await old.plugin.diffConfig(old.inputs, checked.inputs, old.inputs);
      const replaced = diff !== undefined && diff.changes === "some" && diff.replaces.length > 0;
      if (replaced && old) await old.engine.destroy();
      await plugin.configure(checked.inputs);
      // Engine only calls the methods both plugins have, with the same signatures.
      const engine = new Engine(plugin as unknown as DynamicProviderPlugin);
      if (old && !replaced) {
        for (const [k, v] of old.engine.state) engine.state.set(k, v);
        engine.pendingDeletes.push(...old.engine.pendingDeletes);
      }
      if (old) await this.retire(old.plugin);
      this.providers.set(name, { plugin, engine, inputs: checked.inputs });
      return diff ? { diff, replaced } : { replaced };
    } catch (e) {
      await plugin.stop();
      throw e;
    }
  }

  /** The plugin process serving a provider. */
  plugin(name = "default"): NativeProviderPlugin {
    const p = this.providers.get(name);
    if (!p) throw new Error(`no provider ${name}`);
    return p.plugin;
  }

  /** The state of every resource, across providers. */
  get state(): Map<string, ResourceState> {
    const all = new Map<string, ResourceState>();
    for (const p of this.providers.values()) for (const [k, v] of p.engine.state) all.set(k, v);
    return all;
  }

  private groups(specs: NativeResourceSpec[]): Map<string, ResourceSpec[]> {
    const out = new Map<string, ResourceSpec[]>([...this.providers.keys()].map((k) => [k, []]));
    for (const s of specs) {
      const name = s.provider ?? "default";
      const group = out.get(name);
      if (!group) throw new Error(`${s.name}: no provider ${name}`);
      const { provider: _p, ...spec } = s;
      group.push(spec);
    }
    return out;
  }

  /**
   * Check and Diff for every resource, then Create/Update with preview=true for those that would
   * change: the records carry the provider's planned steps. Nothing on a host changes.
   */
  async preview(
    specs: NativeResourceSpec[],
  ): Promise<{ steps: NativeStepRecord[]; failures: Record<string, CheckFailure[]> }> {
    const steps: NativeStepRecord[] = [];
    const failures: Record<string, CheckFailure[]> = {};
    for (const [provider, group] of this.groups(specs)) {
      const { plugin, engine } = this.providers.get(provider)!;
      const r = await engine.preview(group);
      Object.assign(failures, r.failures);
      for (const step of r.steps) {
        const rec: NativeStepRecord = { ...step, provider };
        const spec = group.find((s) => s.name === step.name);
        const old = engine.state.get(step.name);
        if (spec && (step.op === "create" || step.op === "replace")) {
          const urn = urnOf(spec.type, spec.name);
          const checked = await plugin.check(urn, {}, spec.inputs);
          const res = await plugin.create(urn, checked.inputs, { preview: true });
          rec.properties = res.properties;
        } else if (spec && old && step.op === "update") {
          const checked = await plugin.check(old.urn, old.inputs, spec.inputs);
          const res = await plugin.update(
            old.id,
            old.urn,
            old.outputs,
            checked.inputs,
            old.inputs,
            {
              preview: true,
            },
          );
          rec.properties = res.properties;
        }
        if (spec && old && step.op !== "create") {
          const checked = await plugin.check(old.urn, old.inputs, spec.inputs);
          rec.diff = await plugin.diff(old.id, old.urn, old.outputs, checked.inputs, old.inputs);
        }
        const planned = rec.properties?.["plannedSteps"];
        if (Array.isArray(planned)) rec.plannedSteps = planned as string[];
        steps.push(rec);
      }
    }
    return { steps, failures };
  }

  async up(specs: NativeResourceSpec[]): Promise<{ steps: NativeStepRecord[] }> {
    const steps: NativeStepRecord[] = [];
    for (const [provider, group] of this.groups(specs)) {
      const r = await this.providers.get(provider)!.engine.up(group);
      steps.push(...r.steps.map((s) => ({ ...s, provider })));
    }
    return { steps };
  }

  async refresh(): Promise<{ steps: NativeStepRecord[] }> {
    const steps: NativeStepRecord[] = [];
    for (const [provider, p] of this.providers) {
      const r = await p.engine.refresh();
      steps.push(...r.steps.map((s) => ({ ...s, provider })));
    }
    return { steps };
  }

  /** Destroys every provider's resources, the last registered provider first. */
  async destroy(): Promise<{ steps: NativeStepRecord[] }> {
    const steps: NativeStepRecord[] = [];
    for (const [provider, p] of [...this.providers].reverse()) {
      const r = await p.engine.destroy();
      steps.push(...r.steps.map((s) => ({ ...s, provider })));
    }
    return { steps };
  }

  /** `pulumi import <type> <name> <id>`: Read with only the id; records the resource. */
  async import(
    type: string,
    name: string,
    id: string,
    provider = "default",
  ): Promise<ResourceState> {
    const p = this.providers.get(provider);
    if (!p) throw new Error(`no provider ${provider}`);
    const urn = urnOf(type, name);
    const r = await p.plugin.read(id, urn, {}, undefined);
    if (r.id === "") throw new Error(`${type} ${JSON.stringify(id)} does not exist on the host`);
    const state: ResourceState = {
      urn,
      type,
      name,
      id: r.id,
      inputs: r.inputs ?? {},
      outputs: r.properties,
      dependsOn: [],
    };
    p.engine.state.set(name, state);
    return state;
  }

  private async retire(plugin: NativeProviderPlugin): Promise<void> {
    await plugin.stop();
    this.retiredLogs.push(plugin.stderr());
  }

  /** Everything every plugin this engine started wrote to stderr (its log), stopped ones included. */
  logs(): string {
    return [
      ...this.retiredLogs,
      ...[...this.providers.values()].map((p) => p.plugin.stderr()),
    ].join("\n");
  }

  /** Stops every plugin process. */
  async stop(): Promise<void> {
    for (const p of this.providers.values()) await this.retire(p.plugin);
    this.providers.clear();
  }
}
