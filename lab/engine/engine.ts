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
// The RPCs as this file's comments above describe them are built in provider-client.ts (shared with
// native-engine.ts); the engine behaviours specific to the dynamic provider stay here.
//  - deployment_executor.go and step_executor.go: with unbounded `--parallel` (the default) a
//    resource's step runs as soon as it is generated, beside the others; the executor generates
//    one registration's steps at a time; deletes run in waves (`ScheduleDeletes`); a refresh reads
//    every resource at once. `up`/`destroy` do so with `atOnce`, one step at a time without it.
// Simplifications: one plugin (one default provider), no property dependencies between resources
// (only `dependsOn`), so DBR never cascades to dependents.

import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { containsUnknown, UNKNOWN } from "../../provider/src/unknown";
import {
  CheckFailedError,
  PluginError,
  ProviderClient,
  startPlugin,
  TEST_PROJECT,
  TEST_STACK,
  urnOf,
  type CheckFailure,
  type DetailedDiff,
  type Props,
  type StartedPlugin,
} from "./provider-client";

export { CheckFailedError, PluginError, TEST_PROJECT, TEST_STACK, urnOf, type CheckFailure };

/** The engine's marker for a value not known during preview (rpc.unknownValue). */
export { UNKNOWN };

/** Absolute path of the dynamic-provider plugin's entry point. */
export const DYNAMIC_PROVIDER_SCRIPT = path.join(
  path.dirname(require.resolve("@pulumi/pulumi/package.json")),
  "cmd",
  "dynamic-provider",
  "index.js",
);

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
  /** Node options before the script (e.g. --cpu-prof, which NODE_OPTIONS does not take). */
  nodeArgs?: string[];
}

/** What `DynamicProviderPlugin.diff` answers: the fields of DiffResponse the engine acts on. */
interface Diff {
  changes: "some" | "none" | "unknown";
  replaces: string[];
  deleteBeforeReplace: boolean;
}

export class DynamicProviderPlugin extends ProviderClient<Diff> {
  private configured = false;

  private constructor(started: StartedPlugin, callTimeoutMs: number) {
    // The dynamic provider never reports supportsPreview, so the engine answers previews itself.
    super(started, callTimeoutMs, true);
  }

  /** Spawns `node <dynamic-provider/index.js> <engine>`, reads the port it prints, connects. */
  static async start(opts: StartOptions = {}): Promise<DynamicProviderPlugin> {
    const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env) };
    // pkg/resource/plugin/provider_plugin.go sets these for the nodejs dynamic provider.
    env["PULUMI_NODEJS_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_PROJECT"] ??= TEST_PROJECT;
    env["PULUMI_NODEJS_STACK"] ??= TEST_STACK;
    const started = await startPlugin(
      "dynamic provider",
      process.execPath,
      [...(opts.nodeArgs ?? []), DYNAMIC_PROVIDER_SCRIPT, opts.engineAddress ?? "127.0.0.1:1"],
      { cwd: opts.cwd ?? process.cwd(), env, startTimeoutMs: opts.startTimeoutMs ?? 30_000 },
    );
    return new DynamicProviderPlugin(started, opts.callTimeoutMs ?? 0);
  }

  /** Everything the plugin wrote to stdout after its port line (the engine logs it). */
  stdout(): string {
    return this.stdoutText;
  }

  /** Configure, as the engine does for the default `pulumi-nodejs` provider. The engine passes the
   * whole stack config with namespaced keys (`project:key`), which the dynamic provider hands to a
   * provider's `configure` as `config.get("key")` / `config.get("project:key")`. */
  async configure(args: Props = {}): Promise<void> {
    await this.configureProvider("pulumi-nodejs", "default", args, args);
    this.configured = true;
  }

  /** The engine always configures a provider before using it (getPluginConfig waits for it). */
  protected override async beforeResourceCall(): Promise<void> {
    if (!this.configured) await this.configure({});
  }

  protected diffResult(d: DetailedDiff): Diff {
    return { changes: d.changes, replaces: d.replaces, deleteBeforeReplace: d.deleteBeforeReplace };
  }
}

export interface ResourceSpec {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  dependsOn?: string[] /* names */;
  /** The customTimeouts option, in seconds: sent as `timeout` in Create, Update and Delete. */
  customTimeouts?: CustomTimeouts;
}

export interface CustomTimeouts {
  create?: number;
  update?: number;
  delete?: number;
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
  /** The customTimeouts it was registered with (the engine keeps them for the delete). */
  customTimeouts?: CustomTimeouts;
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

function timeout(seconds: number | undefined): { timeoutSeconds?: number } {
  return seconds === undefined ? {} : { timeoutSeconds: seconds };
}

/** Specs in dependency order (a stable topological sort: program order where free). */
export function dependencyOrder(specs: ResourceSpec[]): ResourceSpec[] {
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

/**
 * The engine's schedule of deletes (step_generator.go, `ScheduleDeletes`): the resources none of
 * whose dependencies is still to be deleted form a wave and leave the set, until it is empty; the
 * waves then run in reverse, so the last wave found (the dependents) goes first. A wave runs only
 * once the one before has ended (`performPostSteps`: "not true delete parallelism").
 */
export function deleteWaves<S extends { name: string; dependsOn?: string[] }>(states: S[]): S[][] {
  const condemned = new Set(states);
  const waves: S[][] = [];
  while (condemned.size > 0) {
    const wave = [...condemned].filter(
      (s) => !(s.dependsOn ?? []).some((d) => [...condemned].some((c) => c !== s && c.name === d)),
    );
    if (wave.length === 0) throw new Error("dependency cycle among the resources to delete");
    for (const s of wave) condemned.delete(s);
    waves.push(wave);
  }
  return waves.reverse();
}

/**
 * Throws the first failure among calls that all ran to their end, as the engine reports the first
 * failed step once the steps beside it have ended (their results already taken).
 */
export function throwFirstFailure(results: PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** How `up` and `destroy` run the steps. */
export interface RunOptions {
  /**
   * As the engine does by default (unbounded `--parallel`): each resource's step once what it
   * depends on is done, beside the others; deletes in waves. Without it, one step at a time.
   */
  atOnce?: boolean;
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

  /**
   * Check, Diff and the step each spec needs, then the deletes of what the program no longer has.
   * Without options one resource after another in dependency order (Pulumi's `--parallel 1`).
   * `atOnce` runs them as the engine does by default (see `upAtOnce` and `deleteAll`).
   */
  async up(specs: ResourceSpec[], opts: RunOptions = {}): Promise<{ steps: StepRecord[] }> {
    // An update waits for every value another resource computes: only previews see unknowns.
    for (const s of specs) {
      if (containsUnknown(s.inputs))
        throw new Error(`up: ${s.name} has unknown inputs (preview only)`);
    }
    const steps: StepRecord[] = [];
    const wanted = new Set(specs.map((s) => s.name));
    const ordered = dependencyOrder(specs);
    if (opts.atOnce) {
      await this.upAtOnce(ordered, steps);
    } else {
      for (const spec of ordered) steps.push(await (await this.generate(spec))());
    }

    // Deletes of resources no longer in the program and of replaced resources, dependents first.
    const gone = [...this.state.values()].filter((s) => !wanted.has(s.name));
    await this.deleteAll([...gone, ...this.pendingDeletes], steps, opts);
    return { steps };
  }

  /**
   * The engine's default schedule (deployment_executor.go, unbounded `--parallel`): a program
   * registers a resource once every resource it depends on has completed; the executor's loop
   * generates one registration's steps at a time (Check and Diff, `handleSingleEvent`), in the
   * order registrations arrive, and runs each resource's step as soon as it is generated, beside
   * the others. After a failure no further step starts (the step executor cancels), the steps
   * already running end and are recorded, and the first failure is thrown.
   */
  private async upAtOnce(ordered: ResourceSpec[], steps: StepRecord[]): Promise<void> {
    let failure: { error: unknown } | undefined;
    let generating: Promise<unknown> = Promise.resolve();
    const completed = new Map<string, Promise<boolean>>();
    const fail = (error: unknown): false => {
      failure ??= { error };
      return false;
    };
    for (const spec of ordered) {
      // dependencyOrder put each resource's dependencies before it: their promises exist.
      const deps = (spec.dependsOn ?? []).map((d) => completed.get(d) ?? Promise.resolve(true));
      const run = async (): Promise<boolean> => {
        if (!(await Promise.all(deps)).every(Boolean) || failure) return false;
        const generated = generating.then(() => (failure ? undefined : this.generate(spec)));
        generating = generated.catch(() => undefined);
        const step = await generated;
        if (!step || failure) return false;
        steps.push(await step());
        return true;
      };
      completed.set(spec.name, run().catch(fail));
    }
    await Promise.all(completed.values());
    if (failure) throw failure.error;
  }

  /**
   * Check (and Diff, and Check again without olds for a replacement) for one spec, as the
   * engine's step generator does; returns the step, which makes the provider calls.
   */
  private async generate(spec: ResourceSpec): Promise<() => Promise<StepRecord>> {
    const urn = urnOf(spec.type, spec.name);
    const dependsOn = [...(spec.dependsOn ?? [])];
    const old = this.state.get(spec.name);
    const checked = await this.plugin.check(urn, old ? old.inputs : {}, spec.inputs);
    if (checked.failures.length > 0) throw new CheckFailedError({ [spec.name]: checked.failures });
    const inputs = checked.inputs;

    if (!old) {
      return async () => {
        const created = await this.createRecording(spec, urn, inputs, dependsOn);
        return { op: "create", name: spec.name, detail: { id: created.id } };
      };
    }

    const d = await this.effectiveDiff(old, inputs);
    if (d.changes === "some" && d.replaces.length > 0) {
      // step_generator.go: recompute defaults for the replacement with a Check without olds.
      const again = await this.plugin.check(urn, {}, spec.inputs);
      if (again.failures.length > 0) throw new CheckFailedError({ [spec.name]: again.failures });
      const replacement = again.inputs;
      if (d.deleteBeforeReplace) {
        return async () => {
          await this.plugin.delete(old.id, old.urn, old.outputs, old.inputs, {
            ...timeout(old.customTimeouts?.delete),
          });
          this.state.delete(spec.name);
          const created = await this.createRecording(spec, urn, replacement, dependsOn);
          return {
            op: "replace",
            name: spec.name,
            detail: { ...d, oldId: old.id, id: created.id },
          };
        };
      }
      return async () => {
        let created: { id: string };
        try {
          created = await this.createRecording(spec, urn, replacement, dependsOn);
        } catch (e) {
          // step.go: a partially-failed replacement still marks the old resource for deletion.
          if (e instanceof PluginError && e.initFailed) this.pendingDeletes.push(old);
          throw e;
        }
        this.pendingDeletes.push(old);
        return { op: "replace", name: spec.name, detail: { ...d, oldId: old.id, id: created.id } };
      };
    }
    if (d.changes === "some" || (old.initErrors?.length ?? 0) > 0) {
      return async () => {
        try {
          const res = await this.plugin.update(old.id, urn, old.outputs, inputs, old.inputs, {
            ...timeout(spec.customTimeouts?.update),
          });
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
        return { op: "update", name: spec.name, detail: d };
      };
    }
    return async () => {
      this.state.set(spec.name, { ...old, inputs, dependsOn });
      return { op: "same", name: spec.name };
    };
  }

  /**
   * Deletes `states`, dependents first; only deletes of current resources are steps. Without
   * options one after another; `atOnce` in the engine's waves (`deleteWaves`), each wave's deletes
   * at once, the next wave once every delete of the one before has ended. A failed delete leaves
   * its resource in the state; the deletes running beside it end, no further wave starts, and the
   * first failure is thrown.
   */
  private async deleteAll(
    states: ResourceState[],
    steps: StepRecord[],
    opts: RunOptions = {},
  ): Promise<void> {
    const deleteOne = async (s: ResourceState): Promise<void> => {
      await this.plugin.delete(s.id, s.urn, s.outputs, s.inputs, {
        ...timeout(s.customTimeouts?.delete),
      });
      const pi = this.pendingDeletes.indexOf(s);
      if (pi >= 0) {
        this.pendingDeletes.splice(pi, 1);
      } else {
        this.state.delete(s.name);
        steps.push({ op: "delete", name: s.name, detail: { id: s.id } });
      }
    };
    if (!opts.atOnce) {
      for (const s of reverseDependencyOrder(states)) await deleteOne(s);
      return;
    }
    for (const wave of deleteWaves(states)) {
      throwFirstFailure(await Promise.allSettled(wave.map(deleteOne)));
    }
  }

  private baseState(
    spec: ResourceSpec,
    urn: string,
    id: string,
    inputs: Props,
    dependsOn: string[],
  ): ResourceState {
    const base: ResourceState = {
      urn,
      type: spec.type,
      name: spec.name,
      id,
      inputs,
      outputs: {},
      dependsOn,
    };
    return spec.customTimeouts ? { ...base, customTimeouts: spec.customTimeouts } : base;
  }

  /** Create; on a partial failure record id/properties/init errors like the engine, then rethrow. */
  private async createRecording(
    spec: ResourceSpec,
    urn: string,
    inputs: Props,
    dependsOn: string[],
  ): Promise<{ id: string }> {
    try {
      const res = await this.plugin.create(urn, inputs, {
        ...timeout(spec.customTimeouts?.create),
      });
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

  /**
   * Read each resource: an empty id removes it; otherwise take the outputs (and inputs if any).
   * The reads go out at once, pending deletes' with them, as the engine's refresh sends them (one
   * refresh step per resource, `stepExec.ExecuteParallel` in deployment_executor.go). Once every
   * read has ended, the results are taken in state order; a read that failed leaves its resource
   * as it was, and the first failure is thrown after the others are taken (the engine keeps each
   * refresh step that succeeded). `oneAtATime` sends each read once the one before has ended
   * (Pulumi's `--parallel 1`; the bench's serial schedule).
   */
  async refresh(opts: { oneAtATime?: boolean } = {}): Promise<{ steps: StepRecord[] }> {
    const current = [...this.state.values()];
    const pending = [...this.pendingDeletes];
    const read = (s: ResourceState) => this.plugin.read(s.id, s.urn, s.outputs, s.inputs);
    const targets = [...current, ...pending];
    const results: PromiseSettledResult<Awaited<ReturnType<typeof read>>>[] = [];
    if (opts.oneAtATime) {
      for (const s of targets) results.push(...(await Promise.allSettled([read(s)])));
    } else {
      results.push(...(await Promise.allSettled(targets.map(read))));
    }
    const steps: StepRecord[] = [];
    current.forEach((s, i) => {
      const r = results[i];
      if (r?.status !== "fulfilled") return;
      if (r.value.id === "") {
        this.state.delete(s.name);
        steps.push({ op: "refresh-gone", name: s.name, detail: { id: s.id } });
        return;
      }
      const next: ResourceState = {
        ...s,
        id: r.value.id,
        outputs: r.value.properties,
        inputs: r.value.inputs ?? s.inputs,
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
    });
    pending.forEach((s, i) => {
      const r = results[current.length + i];
      if (r?.status !== "fulfilled") return;
      if (r.value.id === "") this.pendingDeletes.splice(this.pendingDeletes.indexOf(s), 1);
      else s.outputs = r.value.properties;
    });
    throwFirstFailure(results);
    return { steps };
  }

  /** Delete everything (and pending deletes), dependents first; `atOnce` as in `deleteAll`. */
  async destroy(opts: RunOptions = {}): Promise<{ steps: StepRecord[] }> {
    const steps: StepRecord[] = [];
    await this.deleteAll([...this.state.values(), ...this.pendingDeletes], steps, opts);
    return { steps };
  }
}
