// What the two engine-protocol drivers share: engine.ts (the dynamic-provider plugin of
// @pulumi/pulumi) and native-engine.ts (this repo's native plugin). Starting and stopping a plugin
// process, the gRPC client of pulumirpc.ResourceProvider with the request the engine builds for
// each resource RPC (sdk/go/common/resource/plugin/provider_plugin.go), and the errors they raise.

import { spawn, type ChildProcess } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import { Struct, type JavaScriptValue } from "google-protobuf/google/protobuf/struct_pb";

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

export type Props = Record<string, unknown>;

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

/** Sets a request's urn, and the name and type the engine derives from it. */
function forUrn<R extends UrnRequest>(req: R, urn: string): R {
  req.setUrn(urn);
  req.setName(nameOfUrn(urn));
  req.setType(typeOfUrn(urn));
  return req;
}

interface UrnRequest {
  setUrn(value: string): unknown;
  setName(value: string): unknown;
  setType(value: string): unknown;
}

function toPluginError(method: string, err: grpc.ServiceError): PluginError {
  let initFailed: { id: string; properties: Props; reasons: string[] } | undefined;
  // The plugins pack ErrorResourceInitFailed into a google.rpc.Status sent as the
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

/** A plugin process that printed its port. */
export interface StartedPlugin {
  child: ChildProcess;
  exited: Promise<void>;
  port: number;
  /** What it wrote to stdout after its port line, and to stderr, so far. */
  stdoutRest: string;
  stderrSoFar: string;
}

/**
 * Spawns a plugin as the engine does (`<command> <args...>`, the engine address among the args),
 * waits for the port it prints on its first stdout line. `label` names it in errors.
 */
export async function startPlugin(
  label: string,
  command: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; startTimeoutMs: number },
): Promise<StartedPlugin> {
  installExitHook();
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      running.delete(child);
      resolve();
    });
  });
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
        () => reject(new Error(`${label} printed no port in time; stderr: ${err}`)),
        opts.startTimeoutMs,
      );
      check = (): void => {
        const nl = out.indexOf("\n");
        if (nl < 0) return;
        clearTimeout(timer);
        const port = Number(out.slice(0, nl).trim());
        if (!Number.isInteger(port) || port <= 0) {
          reject(new Error(`${label} printed ${JSON.stringify(out)} instead of a port`));
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
        reject(new Error(`${label} exited (${code ?? signal}) before its port; ${err}`));
      });
    });
    child.stdout.off("data", onOut);
    if (check) child.stdout.off("data", check);
    child.stderr.off("data", onErr);
    const nl = out.indexOf("\n");
    return { child, exited, port, stdoutRest: out.slice(nl + 1), stderrSoFar: err };
  } catch (e) {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
    await exited;
    throw e;
  }
}

type Invoke<Res> = (
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

/**
 * A started plugin and its ResourceProvider client: the resource RPCs, built as the engine builds
 * them. `D` is what `diff` answers (the driver's choice of DiffResponse fields).
 */
export abstract class ProviderClient<D> {
  readonly pid: number;
  readonly port: number;
  /** What the plugin's Configure answered. */
  acceptsSecrets = false;
  protected supportsPreview = false;
  protected readonly client: provrpc.ResourceProviderClient;
  protected stdoutText: string;
  private stderrText: string;
  private stopped = false;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  /**
   * `callTimeoutMs`: gRPC deadline for each call, 0 = none. `engineAnswersPreview`: a Create/Update
   * with preview=true is answered here when Configure did not report supportsPreview.
   */
  protected constructor(
    started: StartedPlugin,
    private readonly callTimeoutMs: number,
    private readonly engineAnswersPreview: boolean,
  ) {
    this.child = started.child;
    this.exited = started.exited;
    this.pid = started.child.pid ?? -1;
    this.port = started.port;
    this.stdoutText = started.stdoutRest;
    this.stderrText = started.stderrSoFar;
    this.child.stdout?.on("data", (d: Buffer) => (this.stdoutText += d.toString("utf8")));
    this.child.stderr?.on("data", (d: Buffer) => (this.stderrText += d.toString("utf8")));
    this.client = new provrpc.ResourceProviderClient(
      `127.0.0.1:${started.port}`,
      grpc.credentials.createInsecure(),
    );
  }

  /** Picks what `diff` returns from the whole answer. */
  protected abstract diffResult(d: DetailedDiff): D;

  /** Runs before each resource RPC (Check, Diff, Create, Read, Update, Delete). */
  protected async beforeResourceCall(): Promise<void> {}

  /** Everything the plugin wrote to stderr so far. */
  stderr(): string {
    return this.stderrText;
  }

  protected unary<Res>(method: string, invoke: Invoke<Res>): Promise<Res> {
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

  /**
   * Configure of provider `name` of package `pkg`, as the engine sends it: `args` and the legacy
   * `variables` (`<pkg>:config:<key>`, non-strings JSON-encoded) taken from `variables`.
   */
  protected async configureProvider(
    pkg: string,
    name: string,
    args: Props,
    variables: Props,
  ): Promise<void> {
    const type = `pulumi:providers:${pkg}`;
    const req = forUrn(new provproto.ConfigureRequest(), urnOf(type, name));
    const vars = req.getVariablesMap();
    for (const [k, v] of Object.entries(variables)) {
      if (v === undefined) continue;
      vars.set(`${pkg}:config:${k}`, typeof v === "string" ? v : JSON.stringify(v));
    }
    req.setArgs(struct(args));
    req.setAcceptsecrets(true);
    req.setAcceptresources(true);
    req.setSendsOldInputs(true);
    req.setSendsOldInputsToDelete(true);
    req.setId("00000000-0000-0000-0000-000000000000");
    const res = await this.unary<provproto.ConfigureResponse>("Configure", (md, o, cb) =>
      this.client.configure(req, md, o, cb),
    );
    this.acceptsSecrets = res.getAcceptsecrets();
    this.supportsPreview = res.getSupportspreview();
  }

  /** Check, or CheckConfig of a provider (`urn` is the provider's). */
  protected async checkRequest(
    method: "Check" | "CheckConfig",
    urn: string,
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    const req = forUrn(new provproto.CheckRequest(), urn);
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    const res = await this.unary<provproto.CheckResponse>(method, (md, o, cb) =>
      method === "Check"
        ? this.client.check(req, md, o, cb)
        : this.client.checkConfig(req, md, o, cb),
    );
    return {
      inputs: fromStruct(res.getInputs()),
      failures: res
        .getFailuresList()
        .map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
    };
  }

  /** Diff, or DiffConfig of a provider (id "", `urn` is the provider's). */
  protected async diffRequest(
    method: "Diff" | "DiffConfig",
    id: string,
    urn: string,
    olds: Props,
    news: Props,
    oldInputs?: Props,
  ): Promise<DetailedDiff> {
    const req = forUrn(new provproto.DiffRequest(), urn);
    req.setId(id);
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    const res = await this.unary<provproto.DiffResponse>(method, (md, o, cb) =>
      method === "Diff" ? this.client.diff(req, md, o, cb) : this.client.diffConfig(req, md, o, cb),
    );
    return detailedDiffOf(res);
  }

  async check(
    urn: string,
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    await this.beforeResourceCall();
    return this.checkRequest("Check", urn, olds, news);
  }

  async diff(id: string, urn: string, olds: Props, news: Props, oldInputs?: Props): Promise<D> {
    await this.beforeResourceCall();
    const d = await this.diffRequest("Diff", id, urn, olds, news, oldInputs);
    return this.diffResult(d);
  }

  /** `timeoutSeconds`: the resource's customTimeouts.create, which the engine sends as `timeout`. */
  async create(
    urn: string,
    properties: Props,
    opts: { preview?: boolean; timeoutSeconds?: number } = {},
  ): Promise<{ id: string; properties: Props }> {
    await this.beforeResourceCall();
    const preview = opts.preview === true;
    // provider_plugin.go Create: a preview against a plugin without supportsPreview is answered by
    // the engine with the inputs; the plugin is not called (the dynamic provider would really create).
    if (preview && this.engineAnswersPreview && !this.supportsPreview) {
      return { id: "", properties: { ...properties } };
    }
    const req = forUrn(new provproto.CreateRequest(), urn);
    req.setProperties(struct(properties));
    req.setPreview(preview);
    if (opts.timeoutSeconds !== undefined) req.setTimeout(opts.timeoutSeconds);
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
    await this.beforeResourceCall();
    const req = forUrn(new provproto.ReadRequest(), urn);
    req.setId(id);
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
    opts: { preview?: boolean; timeoutSeconds?: number } = {},
  ): Promise<{ properties: Props }> {
    await this.beforeResourceCall();
    const preview = opts.preview === true;
    if (preview && this.engineAnswersPreview && !this.supportsPreview) {
      return { properties: { ...news } };
    }
    const req = forUrn(new provproto.UpdateRequest(), urn);
    req.setId(id);
    req.setOlds(struct(olds));
    req.setNews(struct(news));
    if (oldInputs !== undefined) req.setOldInputs(struct(oldInputs));
    req.setPreview(preview);
    if (opts.timeoutSeconds !== undefined) req.setTimeout(opts.timeoutSeconds);
    const res = await this.unary<provproto.UpdateResponse>("Update", (md, o, cb) =>
      this.client.update(req, md, o, cb),
    );
    return { properties: fromStruct(res.getProperties()) };
  }

  async delete(
    id: string,
    urn: string,
    properties: Props,
    oldInputs?: Props,
    opts: { timeoutSeconds?: number } = {},
  ): Promise<void> {
    await this.beforeResourceCall();
    const req = forUrn(new provproto.DeleteRequest(), urn);
    req.setId(id);
    if (opts.timeoutSeconds !== undefined) req.setTimeout(opts.timeoutSeconds);
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
    const c = this.child;
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
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }
}
