// Engine-protocol test driver: runs @pulumi/pulumi's dynamic-provider plugin
// (cmd/dynamic-provider, what the engine starts as `pulumi-resource-pulumi-nodejs`) and talks to it
// over gRPC the way the Pulumi engine does, because the Pulumi CLI cannot be installed here.
//
// What is mirrored from the engine (github.com/pulumi/pulumi, read at commit 1b5949891b3c):
//  - sdk/go/common/resource/plugin/provider_plugin.go: what each RPC carries. Configure sends
//    acceptSecrets/acceptResources/sendsOldInputs/sendsOldInputsToDelete=true, `args` and the legacy
//    `variables`; Check sends olds (previous *inputs*, `{}` when creating) and news; Diff and Update
//    send `olds` = previous *outputs*, `oldInputs` = previous inputs, `news` = checked inputs; Create
//    sends the checked inputs; Read sends `properties` = outputs and `inputs`; Delete sends
//    `properties` = outputs and `oldInputs`. The dynamic provider answers Configure with
//    acceptSecrets=false, so the engine sends secrets as plain values: so does this driver.
//    A Create/Update with preview=true is not sent to a plugin that did not report supportsPreview
//    (the dynamic provider never does): the engine answers it itself with the inputs.
//    Errors carrying ErrorResourceInitFailed (grpc-status-details-bin) are a "partial failure":
//    the resource exists with that id and those properties (parseError).
//  - pkg/resource/deploy/step_generator.go: Check before anything else (check failures make the
//    resource invalid and the deployment bails before any step for it); Diff for every resource
//    that has state (no engine-side short cut); a DIFF_UNKNOWN answer falls back to comparing old
//    and new *inputs* (diffResource); replaces only matter when changes are DIFF_SOME; on replace
//    the engine runs Check again *without olds* to recompute defaults; deleteBeforeReplace deletes
//    the old resource first, otherwise the replacement is created and the old resource is marked
//    pending-delete and deleted with the other deletes at the end of the deployment (reverse
//    dependency order); a resource with init errors gets an Update even when Diff says no change.
//  - pkg/resource/deploy/step.go: Same keeps id and outputs and takes the new inputs; Create records
//    a partially-failed resource (id, properties, init errors) and, when replacing, still marks the
//    old one for deletion; Refresh removes a resource whose Read returns an empty id and takes the
//    returned inputs when there are any.
// Simplifications: one plugin (one default provider), no parallelism, no property dependencies
// between resources (only `dependsOn`), so DBR never cascades to dependents.

import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import { Struct, type JavaScriptValue } from "google-protobuf/google/protobuf/struct_pb";

/** The engine's marker for a value not known during preview (rpc.unknownValue). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Absolute path of the dynamic-provider plugin's entry point. */
export const DYNAMIC_PROVIDER_SCRIPT = path.join(
  path.dirname(require.resolve("@pulumi/pulumi/package.json")),
  "cmd",
  "dynamic-provider",
  "index.js",
);

/** Project and stack names used for URNs and for the plugin's PULUMI_*_PROJECT environment. */
export const TEST_PROJECT = "test";
export const TEST_STACK = "test";

export function urnOf(type: string, name: string): string {
  return `urn:pulumi:${TEST_STACK}::${TEST_PROJECT}::${type}::${name}`;
}

export interface CheckFailure {
  property: string;
  reason: string;
}

/** An RPC that failed. `code` is the gRPC status code; `message` is the error's details. */
export class PluginError extends Error {
  code: number;
  /** Set when the error carried ErrorResourceInitFailed: the object exists, half-initialised. */
  initFailed?: { id: string; properties: Record<string, unknown>; reasons: string[] };
  constructor(
    method: string,
    code: number,
    message: string,
    initFailed?: { id: string; properties: Record<string, unknown>; reasons: string[] },
  ) {
    super(message);
    this.name = "PluginError";
    this.code = code;
    if (initFailed !== undefined) this.initFailed = initFailed;
    this.method = method;
  }
  /** Which RPC failed (Check, Diff, Create, ...). */
  method: string;
}

export class CheckFailedError extends Error {
  failures: Record<string, CheckFailure[]>;
  constructor(failures: Record<string, CheckFailure[]>) {
    const text = Object.entries(failures)
      .map(([name, fs]) => `${name}: ${fs.map((f) => `${f.property}: ${f.reason}`).join("; ")}`)
      .join("\n");
    super(`check failed:\n${text}`);
    this.name = "CheckFailedError";
    this.failures = failures;
  }
}

type Props = Record<string, unknown>;

/**
 * Makes a property map JSON-shaped for Struct.fromJavaScript: drops undefined object members
 * (a PropertyMap has no undefined) and turns undefined array elements into null.
 */
function toWire(value: unknown): unknown {
  if (value === undefined) return null;
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(toWire);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v !== undefined) out[k] = toWire(v);
  }
  return out;
}

function struct(props: Props): Struct {
  return Struct.fromJavaScript(toWire(props) as Record<string, JavaScriptValue>);
}

function fromStruct(s: Struct | undefined): Props {
  return s === undefined ? {} : s.toJavaScript();
}

function typeOfUrn(urn: string): string {
  return urn.split("::")[2] ?? "";
}

function nameOfUrn(urn: string): string {
  return urn.split("::").slice(3).join("::");
}

interface Live {
  child: ChildProcess;
  exited: Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: never leave a plugin behind when the test process exits without stop().
  process.on("exit", () => {
    for (const c of running) {
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  });
}

export interface StartOptions {
  /** Working directory of the plugin: `require` inside `__provider` resolves from here. */
  cwd?: string;
  /** Full environment of the plugin (default: this process's). PULUMI_NODEJS_PROJECT,
   * PULUMI_PROJECT and PULUMI_NODEJS_STACK default to "test" as the engine would set them. */
  env?: NodeJS.ProcessEnv;
  /** Engine address passed as the plugin's argument (default 127.0.0.1:1, never dialled). */
  engineAddress?: string;
  /** How long to wait for the port on stdout (default 30 s). */
  startTimeoutMs?: number;
  /** gRPC deadline for each call; 0 (default) = none, like the engine. */
  callTimeoutMs?: number;
}

export class DynamicProviderPlugin {
  readonly pid: number;
  readonly port: number;
  private readonly live: Live;
  private readonly client: provrpc.ResourceProviderClient;
  private stderrText: string;
  private stdoutText: string;
  private configured = false;
  private supportsPreview = false;
  private stopped = false;
  private readonly callTimeoutMs: number;

  private constructor(
    live: Live,
    port: number,
    stdoutRest: string,
    stderrSoFar: string,
    callTimeoutMs: number,
  ) {
    this.live = live;
    this.callTimeoutMs = callTimeoutMs;
    this.pid = live.child.pid ?? -1;
    this.port = port;
    this.stdoutText = stdoutRest;
    this.stderrText = stderrSoFar;
    live.child.stdout?.on("data", (d: Buffer) => (this.stdoutText += d.toString("utf8")));
    live.child.stderr?.on("data", (d: Buffer) => (this.stderrText += d.toString("utf8")));
    this.client = new provrpc.ResourceProviderClient(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    );
  }

  /** Spawns `node <dynamic-provider/index.js> <engine>`, reads the port it prints, connects. */
  static async start(opts: StartOptions = {}): Promise<DynamicProviderPlugin> {
    installExitHook();
    const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env) };
    // pkg/resource/plugin/provider_plugin.go sets these for the nodejs dynamic provider.
    env["PULUMI_NODEJS_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_NODEJS_STACK"] ??= TEST_STACK;
    const child = spawn(
      process.execPath,
      [DYNAMIC_PROVIDER_SCRIPT, opts.engineAddress ?? "127.0.0.1:1"],
      { cwd: opts.cwd ?? process.cwd(), env, stdio: ["ignore", "pipe", "pipe"] },
    );
    running.add(child);
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        running.delete(child);
        resolve();
      });
    });
    const live: Live = { child, exited };
    let out = "";
    let err = "";
    const onOut = (d: Buffer): void => {
      out += d.toString("utf8");
    };
    const onErr = (d: Buffer): void => {
      err += d.toString("utf8");
    };
    child.stdout.on("data", onOut);
    child.stderr.on("data", onErr);
    let check: (() => void) | undefined;
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`dynamic provider printed no port in time; stderr: ${err}`)),
          opts.startTimeoutMs ?? 30_000,
        );
        check = (): void => {
          const nl = out.indexOf("\n");
          if (nl < 0) return;
          clearTimeout(timer);
          const port = Number(out.slice(0, nl).trim());
          if (!Number.isInteger(port) || port <= 0) {
            reject(new Error(`dynamic provider printed ${JSON.stringify(out)} instead of a port`));
          } else {
            resolve(port);
          }
        };
        child.stdout.on("data", check);
        child.once("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
        child.once("exit", (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`dynamic provider exited (${code ?? signal}) before its port; ${err}`));
        });
      });
      child.stdout.off("data", onOut);
      if (check) child.stdout.off("data", check);
      child.stderr.off("data", onErr);
      const nl = out.indexOf("\n");
      return new DynamicProviderPlugin(live, port, out.slice(nl + 1), err, opts.callTimeoutMs ?? 0);
    } catch (e) {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
      await exited;
      throw e;
    }
  }

  /** Everything the plugin wrote to stderr so far. */
  stderr(): string {
    return this.stderrText;
  }

  /** Everything the plugin wrote to stdout after its port line (the engine logs it). */
  stdout(): string {
    return this.stdoutText;
  }

  private unary<Res>(
    method: string,
    invoke: (
      metadata: grpc.Metadata,
      options: Partial<grpc.CallOptions>,
      cb: (err: grpc.ServiceError | null, res: Res) => void,
    ) => grpc.ClientUnaryCall,
  ): Promise<Res> {
    if (this.stopped) return Promise.reject(new Error(`${method}: plugin stopped`));
    // The engine sets no gRPC deadline; one is only used when callTimeoutMs was given.
    const options: Partial<grpc.CallOptions> =
      this.callTimeoutMs > 0 ? { deadline: Date.now() + this.callTimeoutMs } : {};
    return new Promise<Res>((resolve, reject) => {
      invoke(new grpc.Metadata(), options, (err, res) => {
        if (!err) {
          resolve(res);
          return;
        }
        const pe = toPluginError(method, err);
        if (pe.code === Number(grpc.status.DEADLINE_EXCEEDED)) {
          // The plugin answers nothing when building its error reply throws (unhandled rejection).
          pe.message += `; plugin stderr (tail): ${this.stderrText.slice(-2000)}`;
        }
        reject(pe);
      });
    });
  }

  /** Configure, as the engine does for the default `pulumi-nodejs` provider. The engine passes the
   * whole stack config with namespaced keys (`project:key`), which the dynamic provider hands to a
   * provider's `configure` as `config.get("key")` / `config.get("project:key")`. */
  async configure(args: Props = {}): Promise<void> {
    const req = new provproto.ConfigureRequest();
    const vars = req.getVariablesMap();
    for (const [k, v] of Object.entries(args)) {
      if (v === undefined) continue;
      vars.set(`pulumi-nodejs:config:${k}`, typeof v === "string" ? v : JSON.stringify(v));
    }
    req.setArgs(struct(args));
    req.setAcceptsecrets(true);
    req.setAcceptresources(true);
    req.setSendsOldInputs(true);
    req.setSendsOldInputsToDelete(true);
    req.setType("pulumi:providers:pulumi-nodejs");
    req.setName("default");
    req.setUrn(urnOf("pulumi:providers:pulumi-nodejs", "default"));
    req.setId("00000000-0000-0000-0000-000000000000");
    const res = await this.unary<provproto.ConfigureResponse>("Configure", (md, o, cb) =>
      this.client.configure(req, md, o, cb),
    );
    this.configured = true;
    this.acceptsSecrets = res.getAcceptsecrets();
    this.supportsPreview = res.getSupportspreview();
  }

  /** What the plugin's Configure answered (false for the dynamic provider). */
  acceptsSecrets = false;

  /** The engine always configures a provider before using it (getPluginConfig waits for it). */
  private async ensureConfigured(): Promise<void> {
    if (!this.configured) await this.configure({});
  }

  async check(
    urn: string,
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    await this.ensureConfigured();
    const req = new provproto.CheckRequest();
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    const res = await this.unary<provproto.CheckResponse>("Check", (md, o, cb) =>
      this.client.check(req, md, o, cb),
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
  ): Promise<{
    changes: "some" | "none" | "unknown";
    replaces: string[];
    deleteBeforeReplace: boolean;
  }> {
    await this.ensureConfigured();
    const req = new provproto.DiffRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    const res = await this.unary<provproto.DiffResponse>("Diff", (md, o, cb) =>
      this.client.diff(req, md, o, cb),
    );
    const c = res.getChanges();
    const changes =
      c === provproto.DiffResponse.DiffChanges.DIFF_SOME
        ? "some"
        : c === provproto.DiffResponse.DiffChanges.DIFF_NONE
          ? "none"
          : "unknown";
    return {
      changes,
      replaces: res.getReplacesList(),
      deleteBeforeReplace: res.getDeletebeforereplace(),
    };
  }

  async create(
    urn: string,
    properties: Props,
    opts: { preview?: boolean } = {},
  ): Promise<{ id: string; properties: Props }> {
    await this.ensureConfigured();
    const preview = opts.preview === true;
    // provider_plugin.go Create: a preview against a plugin without supportsPreview is answered by
    // the engine with the inputs; the plugin is not called (the dynamic provider would really create).
    if (preview && !this.supportsPreview) return { id: "", properties: { ...properties } };
    const req = new provproto.CreateRequest();
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    req.setPreview(preview);
    const res = await this.unary<provproto.CreateResponse>("Create", (md, o, cb) =>
      this.client.create(req, md, o, cb),
    );
    if (res.getId() === "" && !preview) {
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
    await this.ensureConfigured();
    const req = new provproto.ReadRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    if (inputs !== undefined) req.setInputs(struct(inputs));
    const res = await this.unary<provproto.ReadResponse>("Read", (md, o, cb) =>
      this.client.read(req, md, o, cb),
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
    await this.ensureConfigured();
    const preview = opts.preview === true;
    if (preview && !this.supportsPreview) return { properties: { ...news } };
    const req = new provproto.UpdateRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    req.setPreview(preview);
    const res = await this.unary<provproto.UpdateResponse>("Update", (md, o, cb) =>
      this.client.update(req, md, o, cb),
    );
    return { properties: fromStruct(res.getProperties()) };
  }

  async delete(id: string, urn: string, properties: Props, oldInputs?: Props): Promise<void> {
    await this.ensureConfigured();
    const req = new provproto.DeleteRequest();
    req.setId(id);
    req.setUrn(urn);
    req.setName(nameOfUrn(urn));
    req.setType(typeOfUrn(urn));
    req.setProperties(struct(properties));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    await this.unary("Delete", (md, o, cb) => this.client.delete(req, md, o, cb));
  }

  /** Closes the client, kills the plugin by its pid (SIGTERM, then SIGKILL after 5 s), waits. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.client.close();
    }
    const c = this.live.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(this.pid, "SIGTERM");
    } catch {
      // already gone
    }
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          process.kill(this.pid, "SIGKILL");
        } catch {
          // already gone
        }
        resolve();
      }, 5000);
    });
    await Promise.race([this.live.exited, killed]);
    clearTimeout(timer);
    await this.live.exited;
  }
}

function toPluginError(method: string, err: grpc.ServiceError): PluginError {
  let initFailed: { id: string; properties: Props; reasons: string[] } | undefined;
  // The dynamic provider packs ErrorResourceInitFailed into a google.rpc.Status sent as the
  // `grpc-status-details-bin` trailer (cmd/dynamic-provider grpcResponseFromError).
  for (const raw of err.metadata?.get("grpc-status-details-bin") ?? []) {
    const bytes = typeof raw === "string" ? Buffer.from(raw, "base64") : raw;
    const status = statusproto.Status.deserializeBinary(new Uint8Array(bytes));
    for (const any of status.getDetailsList()) {
      const detail = any.unpack(
        (b) => provproto.ErrorResourceInitFailed.deserializeBinary(b),
        "pulumirpc.ErrorResourceInitFailed",
      );
      if (detail) {
        initFailed = {
          id: detail.getId(),
          properties: fromStruct(detail.getProperties()),
          reasons: detail.getReasonsList(),
        };
      }
    }
  }
  return new PluginError(method, err.code, err.details || err.message, initFailed);
}

export interface ResourceSpec {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  dependsOn?: string[] /* names */;
}

export interface ResourceState {
  urn: string;
  type: string;
  name: string;
  id: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  /** Names this resource depended on when it was last created/updated/same. */
  dependsOn?: string[];
  /** Set after a partial failure (ErrorResourceInitFailed); the next up sends Update. */
  initErrors?: string[];
}

export interface StepRecord {
  op:
    | "create"
    | "update"
    | "replace"
    | "delete"
    | "same"
    | "read"
    | "refresh-gone"
    | "refresh-changed";
  name: string;
  detail?: unknown;
}

/** Specs in dependency order (a stable topological sort: program order where free). */
function dependencyOrder(specs: ResourceSpec[]): ResourceSpec[] {
  const byName = new Map<string, ResourceSpec>();
  for (const s of specs) {
    if (byName.has(s.name)) throw new Error(`duplicate resource name ${s.name}`);
    byName.set(s.name, s);
  }
  const out: ResourceSpec[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (s: ResourceSpec, trail: string[]): void => {
    const st = state.get(s.name);
    if (st === "done") return;
    if (st === "visiting") throw new Error(`dependency cycle: ${[...trail, s.name].join(" -> ")}`);
    state.set(s.name, "visiting");
    for (const d of s.dependsOn ?? []) {
      const dep = byName.get(d);
      if (!dep) throw new Error(`${s.name} depends on unknown resource ${d}`);
      visit(dep, [...trail, s.name]);
    }
    state.set(s.name, "done");
    out.push(s);
  };
  for (const s of specs) visit(s, []);
  return out;
}

/** States in reverse dependency order (dependents first); ties in reverse of the given order. */
function reverseDependencyOrder(states: ResourceState[]): ResourceState[] {
  const names = new Set(states.map((s) => s.name));
  const out: ResourceState[] = [];
  const done = new Set<ResourceState>();
  const visit = (s: ResourceState, seen: Set<ResourceState>): void => {
    if (done.has(s) || seen.has(s)) return;
    seen.add(s);
    for (const d of s.dependsOn ?? []) {
      if (!names.has(d)) continue;
      for (const dep of states.filter((x) => x.name === d)) visit(dep, seen);
    }
    done.add(s);
    out.push(s);
  };
  for (const s of states) visit(s, new Set());
  return out.reverse();
}

/** A minimal in-memory engine over one plugin: urn = `urn:pulumi:test::test::${type}::${name}`. */
export class Engine {
  readonly state = new Map<string, ResourceState>();
  /** Old resources replaced create-before-delete whose delete has not happened (or failed). */
  readonly pendingDeletes: ResourceState[] = [];
  private readonly plugin: DynamicProviderPlugin;

  constructor(plugin: DynamicProviderPlugin) {
    this.plugin = plugin;
  }

  /** Check then Diff for every spec; never Create/Update/Delete. Check failures are collected. */
  async preview(
    specs: ResourceSpec[],
  ): Promise<{ steps: StepRecord[]; failures: Record<string, CheckFailure[]> }> {
    const steps: StepRecord[] = [];
    const failures: Record<string, CheckFailure[]> = {};
    const wanted = new Set(specs.map((s) => s.name));
    for (const spec of dependencyOrder(specs)) {
      const urn = urnOf(spec.type, spec.name);
      const old = this.state.get(spec.name);
      const checked = await this.plugin.check(urn, old ? old.inputs : {}, spec.inputs);
      if (checked.failures.length > 0) {
        failures[spec.name] = checked.failures;
        continue;
      }
      if (!old) {
        steps.push({ op: "create", name: spec.name, detail: { inputs: checked.inputs } });
        continue;
      }
      const d = await this.effectiveDiff(old, checked.inputs);
      if (d.changes === "some" && d.replaces.length > 0) {
        const again = await this.plugin.check(urn, {}, spec.inputs);
        if (again.failures.length > 0) {
          failures[spec.name] = again.failures;
          continue;
        }
        steps.push({ op: "replace", name: spec.name, detail: d });
      } else if (d.changes === "some" || (old.initErrors?.length ?? 0) > 0) {
        steps.push({ op: "update", name: spec.name, detail: d });
      } else {
        steps.push({ op: "same", name: spec.name });
      }
    }
    const gone = [...this.state.values()].filter((s) => !wanted.has(s.name));
    for (const s of reverseDependencyOrder([...gone, ...this.pendingDeletes])) {
      steps.push({ op: "delete", name: s.name });
    }
    return { steps, failures };
  }

  /** Diff, then the engine's DIFF_UNKNOWN fallback (compare old and new inputs). */
  private async effectiveDiff(
    old: ResourceState,
    newInputs: Props,
  ): Promise<{ changes: "some" | "none"; replaces: string[]; deleteBeforeReplace: boolean }> {
    const d = await this.plugin.diff(old.id, old.urn, old.outputs, newInputs, old.inputs);
    const changes =
      d.changes === "unknown"
        ? isDeepStrictEqual(old.inputs, newInputs)
          ? "none"
          : "some"
        : d.changes;
    return { changes, replaces: d.replaces, deleteBeforeReplace: d.deleteBeforeReplace };
  }

  async up(specs: ResourceSpec[]): Promise<{ steps: StepRecord[] }> {
    const steps: StepRecord[] = [];
    const wanted = new Set(specs.map((s) => s.name));
    const ordered = dependencyOrder(specs);
    for (const spec of ordered) {
      const urn = urnOf(spec.type, spec.name);
      const dependsOn = [...(spec.dependsOn ?? [])];
      const old = this.state.get(spec.name);
      const checked = await this.plugin.check(urn, old ? old.inputs : {}, spec.inputs);
      if (checked.failures.length > 0)
        throw new CheckFailedError({ [spec.name]: checked.failures });
      let inputs = checked.inputs;

      if (!old) {
        const created = await this.createRecording(spec, urn, inputs, dependsOn);
        steps.push({ op: "create", name: spec.name, detail: { id: created.id } });
        continue;
      }

      const d = await this.effectiveDiff(old, inputs);
      if (d.changes === "some" && d.replaces.length > 0) {
        // step_generator.go: recompute defaults for the replacement with a Check without olds.
        const again = await this.plugin.check(urn, {}, spec.inputs);
        if (again.failures.length > 0) throw new CheckFailedError({ [spec.name]: again.failures });
        inputs = again.inputs;
        if (d.deleteBeforeReplace) {
          await this.plugin.delete(old.id, old.urn, old.outputs, old.inputs);
          this.state.delete(spec.name);
          const created = await this.createRecording(spec, urn, inputs, dependsOn);
          steps.push({
            op: "replace",
            name: spec.name,
            detail: { ...d, oldId: old.id, id: created.id },
          });
        } else {
          let created: { id: string };
          try {
            created = await this.createRecording(spec, urn, inputs, dependsOn);
          } catch (e) {
            // step.go: a partially-failed replacement still marks the old resource for deletion.
            if (e instanceof PluginError && e.initFailed) this.pendingDeletes.push(old);
            throw e;
          }
          this.pendingDeletes.push(old);
          steps.push({
            op: "replace",
            name: spec.name,
            detail: { ...d, oldId: old.id, id: created.id },
          });
        }
      } else if (d.changes === "some" || (old.initErrors?.length ?? 0) > 0) {
        try {
          const res = await this.plugin.update(old.id, urn, old.outputs, inputs, old.inputs);
          this.state.set(spec.name, {
            ...this.baseState(spec, urn, old.id, inputs, dependsOn),
            outputs: res.properties,
          });
        } catch (e) {
          if (e instanceof PluginError && e.initFailed) {
            this.state.set(spec.name, {
              ...this.baseState(spec, urn, old.id, inputs, dependsOn),
              outputs: e.initFailed.properties,
              initErrors: e.initFailed.reasons.length > 0 ? e.initFailed.reasons : [e.message],
            });
          }
          throw e;
        }
        steps.push({ op: "update", name: spec.name, detail: d });
      } else {
        this.state.set(spec.name, { ...old, inputs, dependsOn });
        steps.push({ op: "same", name: spec.name });
      }
    }

    // Deletes of resources no longer in the program and of replaced resources, dependents first.
    const gone = [...this.state.values()].filter((s) => !wanted.has(s.name));
    for (const s of reverseDependencyOrder([...gone, ...this.pendingDeletes])) {
      await this.plugin.delete(s.id, s.urn, s.outputs, s.inputs);
      const pi = this.pendingDeletes.indexOf(s);
      if (pi >= 0) {
        this.pendingDeletes.splice(pi, 1);
      } else {
        this.state.delete(s.name);
        steps.push({ op: "delete", name: s.name, detail: { id: s.id } });
      }
    }
    return { steps };
  }

  private baseState(
    spec: ResourceSpec,
    urn: string,
    id: string,
    inputs: Props,
    dependsOn: string[],
  ): ResourceState {
    return { urn, type: spec.type, name: spec.name, id, inputs, outputs: {}, dependsOn };
  }

  /** Create; on a partial failure record id/properties/init errors like the engine, then rethrow. */
  private async createRecording(
    spec: ResourceSpec,
    urn: string,
    inputs: Props,
    dependsOn: string[],
  ): Promise<{ id: string }> {
    try {
      const res = await this.plugin.create(urn, inputs);
      this.state.set(spec.name, {
        ...this.baseState(spec, urn, res.id, inputs, dependsOn),
        outputs: res.properties,
      });
      return { id: res.id };
    } catch (e) {
      if (e instanceof PluginError && e.initFailed) {
        this.state.set(spec.name, {
          ...this.baseState(spec, urn, e.initFailed.id, inputs, dependsOn),
          outputs: e.initFailed.properties,
          initErrors: e.initFailed.reasons.length > 0 ? e.initFailed.reasons : [e.message],
        });
      }
      throw e;
    }
  }

  /** Read each resource: an empty id removes it; otherwise take the outputs (and inputs if any). */
  async refresh(): Promise<{ steps: StepRecord[] }> {
    const steps: StepRecord[] = [];
    for (const s of [...this.state.values()]) {
      const r = await this.plugin.read(s.id, s.urn, s.outputs, s.inputs);
      if (r.id === "") {
        this.state.delete(s.name);
        steps.push({ op: "refresh-gone", name: s.name, detail: { id: s.id } });
        continue;
      }
      const next: ResourceState = {
        ...s,
        id: r.id,
        outputs: r.properties,
        inputs: r.inputs ?? s.inputs,
      };
      this.state.set(s.name, next);
      const changed =
        next.id !== s.id ||
        !isDeepStrictEqual(next.outputs, s.outputs) ||
        !isDeepStrictEqual(next.inputs, s.inputs);
      steps.push(
        changed
          ? {
              op: "refresh-changed",
              name: s.name,
              detail: {
                before: s.outputs,
                after: next.outputs,
                inputsChanged: !isDeepStrictEqual(next.inputs, s.inputs),
              },
            }
          : { op: "same", name: s.name },
      );
    }
    for (const s of [...this.pendingDeletes]) {
      const r = await this.plugin.read(s.id, s.urn, s.outputs, s.inputs);
      if (r.id === "") this.pendingDeletes.splice(this.pendingDeletes.indexOf(s), 1);
      else s.outputs = r.properties;
    }
    return { steps };
  }

  /** Delete everything (and pending deletes) in reverse dependency order. */
  async destroy(): Promise<{ steps: StepRecord[] }> {
    const steps: StepRecord[] = [];
    for (const s of reverseDependencyOrder([...this.state.values(), ...this.pendingDeletes])) {
      await this.plugin.delete(s.id, s.urn, s.outputs, s.inputs);
      const pi = this.pendingDeletes.indexOf(s);
      if (pi >= 0) {
        this.pendingDeletes.splice(pi, 1);
      } else {
        this.state.delete(s.name);
        steps.push({ op: "delete", name: s.name, detail: { id: s.id } });
      }
    }
    return { steps };
  }
}
