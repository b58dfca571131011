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
//    are destroyed through the old provider and created again by the next `up`);
//  - the plugin's last argument is the address of the engine's own gRPC service, whose Log the
//    plugin calls to show the user a message (fake-engine.ts records them);
//  - a provider configuration holding unknowns (a preview) is not sent to Configure: the engine
//    answers Check with the news, Diff as unavailable and a preview Create/Update with no
//    properties itself, and never sends Create/Update/Delete (provider_plugin.go, cfgknown).
// Simplifications: dependsOn only between resources of the same provider.

import * as path from "node:path";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import { containsUnknown, unwrapSecrets } from "../../provider/src/native/wire";
import { FakeEngine, type LogMessage } from "./fake-engine";
import {
  CheckFailedError,
  dependencyOrder,
  Engine,
  PluginError,
  TEST_PROJECT,
  TEST_STACK,
  throwFirstFailure,
  urnOf,
  type CheckFailure,
  type DynamicProviderPlugin,
  type ResourceSpec,
  type ResourceState,
  type RunOptions,
  type StepRecord,
} from "./engine";
import {
  ProviderClient,
  startPlugin,
  type DetailedDiff,
  type PropertyDiffKind,
  type Props,
  type StartedPlugin,
} from "./provider-client";

export type { LogMessage } from "./fake-engine";
export {
  CheckFailedError,
  PluginError,
  urnOf,
  type CheckFailure,
  type DetailedDiff,
  type PropertyDiffKind,
  type ResourceState,
  type StepRecord,
};
export { secret, isSecret, UNKNOWN } from "../../provider/src/native/wire";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
/** The plugin as Pulumi finds it through `plugins.providers` in Pulumi.yaml. */
export const NATIVE_PLUGIN = path.join(REPO_ROOT, "provider", "bin", "pulumi-resource-hypervisor");

const PROVIDER_TYPE = "pulumi:providers:hypervisor";

/** The client class NativeProviderPlugin extends (its overrides take the same arguments). */
type Base = ProviderClient<DetailedDiff>;

/** One native plugin process, configured (at most) once, as the engine runs one per provider. */
export class NativeProviderPlugin extends ProviderClient<DetailedDiff> {
  /** What Configure answered. */
  override supportsPreview = false;
  /** The provider's name (for its URN). */
  name = "default";
  /** False after Configure with unknowns: the engine then answers resource calls itself. */
  configKnown = true;

  private constructor(
    started: StartedPlugin,
    private readonly engineAddress: string,
  ) {
    // Create/Update with preview=true always reach the plugin (it reports supportsPreview).
    super(started, 0, false);
  }

  /** Spawns the plugin with an engine address argument and reads the port it prints. */
  static async start(
    opts: { cwd?: string; env?: NodeJS.ProcessEnv; plugin?: string; engineAddress?: string } = {},
  ): Promise<NativeProviderPlugin> {
    const engineAddress = opts.engineAddress ?? "127.0.0.1:1";
    const env = { ...(opts.env ?? process.env) };
    env["PULUMI_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_STACK"] ??= TEST_STACK;
    const started = await startPlugin(
      "native plugin",
      opts.plugin ?? NATIVE_PLUGIN,
      [engineAddress],
      {
        cwd: opts.cwd ?? REPO_ROOT,
        env,
        startTimeoutMs: 30_000,
      },
    );
    return new NativeProviderPlugin(started, engineAddress);
  }

  protected diffResult(d: DetailedDiff): DetailedDiff {
    return d;
  }

  async handshake(): Promise<{ acceptSecrets: boolean; acceptResources: boolean }> {
    const req = new provproto.ProviderHandshakeRequest();
    req.setEngineAddress(this.engineAddress);
    req.setRootDirectory(REPO_ROOT);
    req.setProgramDirectory(REPO_ROOT);
    req.setConfigureWithUrn(true);
    const res = await this.unary<provproto.ProviderHandshakeResponse>("Handshake", (md, o, cb) =>
      this.client.handshake(req, md, o, cb),
    );
    return { acceptSecrets: res.getAcceptSecrets(), acceptResources: res.getAcceptResources() };
  }

  async getSchema(): Promise<string> {
    const req = new provproto.GetSchemaRequest();
    const res = await this.unary<provproto.GetSchemaResponse>("GetSchema", (md, o, cb) =>
      this.client.getSchema(req, md, o, cb),
    );
    return res.getSchema();
  }

  async getPluginInfo(): Promise<{ version: string }> {
    const res = await this.unary<{ getVersion(): string }>("GetPluginInfo", (md, o, cb) =>
      this.client.getPluginInfo(new Empty(), md, o, cb),
    );
    return { version: res.getVersion() };
  }

  async cancel(): Promise<void> {
    await this.unary("Cancel", (md, o, cb) => this.client.cancel(new Empty(), md, o, cb));
  }

  private providerUrn(): string {
    return urnOf(PROVIDER_TYPE, this.name);
  }

  async checkConfig(
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: CheckFailure[] }> {
    return this.checkRequest("CheckConfig", this.providerUrn(), olds, news);
  }

  async diffConfig(olds: Props, news: Props, oldInputs?: Props): Promise<DetailedDiff> {
    return this.diffRequest("DiffConfig", "", this.providerUrn(), olds, news, oldInputs);
  }

  /**
   * Configure as the engine does: `args` with secrets, and `variables` as strings. A configuration
   * holding unknowns is not sent (provider_plugin.go Configure): resource calls are then answered
   * here as the engine answers them.
   */
  async configure(args: Props): Promise<void> {
    if (containsUnknown(args)) {
      this.configKnown = false;
      return;
    }
    this.configKnown = true;
    await this.configureProvider("hypervisor", this.name, args, unwrapSecrets(args) as Props);
  }

  // The engine's own answers for a provider whose configuration is not known; the overrides take
  // the base class's arguments as they are and pass them on unchanged otherwise.
  override async check(...args: Parameters<Base["check"]>): ReturnType<Base["check"]> {
    if (!this.configKnown) return { inputs: args[2], failures: [] };
    return super.check(...args);
  }

  override async diff(...args: Parameters<Base["diff"]>): ReturnType<Base["diff"]> {
    if (!this.configKnown) {
      // DiffUnavailable: the step generator shows the resource as possibly changed.
      return {
        changes: "unknown",
        replaces: [],
        deleteBeforeReplace: false,
        diffs: [],
        hasDetailedDiff: false,
        detailedDiff: {},
      };
    }
    return super.diff(...args);
  }

  override async create(...args: Parameters<Base["create"]>): ReturnType<Base["create"]> {
    const [urn, , opts] = args;
    if (!this.configKnown) {
      if (opts?.preview === true) return { id: "", properties: {} };
      throw new Error(`Create ${urn}: the provider's configuration is not known`);
    }
    return super.create(...args);
  }

  override async update(...args: Parameters<Base["update"]>): ReturnType<Base["update"]> {
    const [, urn, , , , opts] = args;
    if (!this.configKnown) {
      if (opts?.preview === true) return { properties: {} };
      throw new Error(`Update ${urn}: the provider's configuration is not known`);
    }
    return super.update(...args);
  }
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
  private engineService: Promise<FakeEngine> | undefined;

  constructor(private readonly opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {}

  /** The engine's Log service every plugin of this engine reports to (started on first use). */
  private fakeEngine(): Promise<FakeEngine> {
    this.engineService ??= FakeEngine.start();
    return this.engineService;
  }

  /** What the plugins sent to the engine's Log service: what a user of `pulumi up` sees. */
  async engineLog(): Promise<LogMessage[]> {
    return [...(await this.fakeEngine()).messages];
  }

  /**
   * Registers a provider (name "default" is the default provider, configured from stack config)
   * or changes its configuration: CheckConfig, DiffConfig, then a fresh plugin is configured.
   * A change of host destroys its resources through the old provider (the next up recreates them).
   */
  async provider(name: string, inputs: Props): Promise<{ diff?: DetailedDiff; replaced: boolean }> {
    const old = this.providers.get(name);
    const engineAddress = (await this.fakeEngine()).address;
    const plugin = await NativeProviderPlugin.start({ ...this.opts, engineAddress });
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
   * change: the records carry the provider's planned steps. Nothing on a host changes. `atOnce`
   * sends the previews as the engine does by default (unbounded `--parallel`): each resource's
   * once those it depends on are done, beside the others, so that the provider sees at once what
   * the engine asks at once; without it, one after another in dependency order.
   */
  async preview(
    specs: NativeResourceSpec[],
    opts: RunOptions = {},
  ): Promise<{ steps: NativeStepRecord[]; failures: Record<string, CheckFailure[]> }> {
    const steps: NativeStepRecord[] = [];
    const failures: Record<string, CheckFailure[]> = {};
    for (const [provider, group] of this.groups(specs)) {
      const { plugin, engine } = this.providers.get(provider)!;
      const r = await engine.preview(group);
      Object.assign(failures, r.failures);
      const record = async (step: StepRecord): Promise<NativeStepRecord> => {
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
        return rec;
      };
      if (!opts.atOnce) {
        for (const step of r.steps) steps.push(await record(step));
        continue;
      }
      // dependencyOrder puts a resource's dependencies before it: their promises exist (one in
      // another provider's group is not waited for)
      const done = new Map<string, Promise<unknown>>();
      for (const spec of dependencyOrder(group)) {
        const step = r.steps.find((s) => s.name === spec.name);
        const deps = (spec.dependsOn ?? []).flatMap((d) => done.get(d) ?? []);
        const run = async (): Promise<void> => {
          await Promise.all(deps);
          if (step) steps.push(await record(step));
        };
        done.set(spec.name, run());
      }
      throwFirstFailure(await Promise.allSettled(done.values()));
      for (const step of r.steps.filter((s) => !done.has(s.name))) steps.push(await record(step));
    }
    return { steps, failures };
  }

  /**
   * Each provider's resources through its Engine (`opts` as there: `atOnce` runs them as the engine
   * does by default), one provider after another, where the engine runs every provider's at once.
   */
  async up(
    specs: NativeResourceSpec[],
    opts: RunOptions = {},
  ): Promise<{ steps: NativeStepRecord[] }> {
    const steps: NativeStepRecord[] = [];
    for (const [provider, group] of this.groups(specs)) {
      const r = await this.providers.get(provider)!.engine.up(group, opts);
      steps.push(...r.steps.map((s) => ({ ...s, provider })));
    }
    return { steps };
  }

  /** Every provider's reads at once, as the engine sends them; steps in provider order. */
  async refresh(): Promise<{ steps: NativeStepRecord[] }> {
    const providers = [...this.providers];
    const results = await Promise.allSettled(providers.map(([, p]) => p.engine.refresh()));
    const steps: NativeStepRecord[] = [];
    results.forEach((r, i) => {
      const provider = providers[i]![0];
      if (r.status === "fulfilled") steps.push(...r.value.steps.map((s) => ({ ...s, provider })));
    });
    throwFirstFailure(results);
    return { steps };
  }

  /**
   * Destroys every provider's resources, the last registered provider first (`opts` as in `up`;
   * the engine's delete waves would span the providers).
   */
  async destroy(opts: RunOptions = {}): Promise<{ steps: NativeStepRecord[] }> {
    const steps: NativeStepRecord[] = [];
    for (const [provider, p] of [...this.providers].reverse()) {
      const r = await p.engine.destroy(opts);
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

  /** The engine's Cancel (Ctrl-C during an update): sent to every provider plugin. */
  async cancel(): Promise<void> {
    for (const p of this.providers.values()) await p.plugin.cancel();
  }

  /** Stops every plugin process. */
  async stop(): Promise<void> {
    for (const p of this.providers.values()) await this.retire(p.plugin);
    this.providers.clear();
    if (this.engineService) (await this.engineService).stop();
    this.engineService = undefined;
  }
}
