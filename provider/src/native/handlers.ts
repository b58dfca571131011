// The native provider's operations in plain values; server.ts maps them to and from gRPC.
// The same Lifecycle and resource modules serve the dynamic SDK classes (dynamic.ts).
import { isDeepStrictEqual } from "node:util";
import { InitFailedError, PlanError } from "../errors";
import { connectionIdentity, type Connection } from "../host/connection";
import type { Host } from "../host/host";
import { hostFor } from "../host/pool";
import { observeCoalesced } from "../observe-batch";
import { quoteArgv } from "../host/quote";
import {
  Lifecycle,
  observeContext,
  parseAll,
  type CheckFailure,
  type HostFactory,
  type OperationOptions,
  type PropertyDiffKind,
} from "../lifecycle";
import { abortableHost } from "../abort";
import { logStatus, logWarn } from "../log";
import { dropUndefined } from "../dynamic";
import { resourceModules } from "../registry";
import type { ResourceModule } from "../resource";
import { stepDisplayArgv, type Step } from "../step";
import { ENGINE_KEYS, parseProviderConfig } from "./config";
import { containsUnknown, secret, secretKeys, UNKNOWN, unwrapSecrets, type Props } from "./wire";

export const PACKAGE = "hypervisor";

export type { PropertyDiffKind };

export interface NativeDiff {
  changes: boolean;
  replaces: string[];
  deleteBeforeReplace: boolean;
  /** Property name -> kind, for every changed input (consistent with `replaces`). */
  detailedDiff: Record<string, PropertyDiffKind>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyModule = ResourceModule<any, any>;

/** Returns "Bridge" for "hypervisor:index:Bridge"; throws for other tokens. */
export function resourceTypeOf(token: string): string {
  const m = /^hypervisor:index:([A-Za-z]+)$/.exec(token);
  if (!m?.[1] || !resourceModules[m[1]]) {
    throw new Error(`unknown resource type ${JSON.stringify(token)}`);
  }
  return m[1];
}

/** Returns one line per step for previews: its summary and its command, never file contents. */
export function describeStep(step: Step): string {
  if ("writeFile" in step) {
    const { path, content, mode } = step.writeFile;
    return `${step.summary}: write ${path} (${Buffer.byteLength(content)} bytes, mode ${mode.toString(8).padStart(4, "0")})`;
  }
  const stdin = step.stdin !== undefined ? ` < stdin (${Buffer.byteLength(step.stdin)} bytes)` : "";
  return `${step.summary}: ${quoteArgv(stepDisplayArgv(step))}${stdin}`;
}

function plainJson(v: unknown): unknown {
  return v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as unknown);
}

function stripEngineKeys(props: Props): Props {
  return Object.fromEntries(Object.entries(props).filter(([k]) => !k.startsWith("__")));
}

/** How long a preview waits to observe a host before it shows the plan without steps. */
const PREVIEW_OBSERVE_MS = 20_000;

/** One configured provider instance (one plugin process serves one, as the engine starts it). */
export class NativeProvider {
  private connection: Connection | undefined;
  /** Configured with values not known yet (a preview): resources without their own get UNKNOWN. */
  private configUnknown = false;
  private readonly lifecycles = new Map<string, Lifecycle<{ name: string }, unknown>>();
  private readonly cancelling = new AbortController();
  /**
   * The links (bridges, taps) that previews in this process showed as created, by host: a
   * resource whose plan needs one of them (a tap on a new bridge) shows its plan without steps,
   * and that is no warning.
   */
  private readonly previewedLinks = new Set<string>();

  constructor(private readonly hostFactory: HostFactory = hostFor) {}

  /**
   * The engine's Cancel: every operation in flight stops (its SSH commands killed, a half-done
   * create recorded with its id) and every later one fails at once.
   */
  cancel(): void {
    this.cancelling.abort(new Error("cancelled by the engine"));
  }

  /** Whether Cancel was called. */
  get cancelled(): boolean {
    return this.cancelling.signal.aborted;
  }

  /** Options of one operation: Cancel, and the resource's customTimeouts (seconds, 0 for none). */
  private operation(timeoutSeconds = 0): OperationOptions {
    if (!(timeoutSeconds > 0)) return { signal: this.cancelling.signal };
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new Error(`timed out after ${timeoutSeconds} s (customTimeouts)`)),
      timeoutSeconds * 1000,
    );
    timer.unref();
    timeout.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    return { signal: AbortSignal.any([this.cancelling.signal, timeout.signal]) };
  }

  /** Validates configuration; never connects. Values not known yet (a preview) pass. */
  checkConfig(news: Props): { inputs: Props; failures: CheckFailure[] } {
    return { inputs: news, failures: parseProviderConfig(news).failures };
  }

  /**
   * Only a change of where the connection leads replaces the provider's resources; a value not
   * known yet replaces them when it may lead elsewhere (host, port, proxy, or the whole object).
   */
  diffConfig(olds: Props, news: Props): NativeDiff {
    const o = unwrapSecrets(olds) as Props;
    const n = unwrapSecrets(news) as Props;
    const keys = [...new Set([...Object.keys(o), ...Object.keys(n)])].filter(
      (k) => !ENGINE_KEYS.has(k) && !k.startsWith("__"),
    );
    const changed = keys.filter(
      (k) => containsUnknown(n[k]) || JSON.stringify(o[k]) !== JSON.stringify(n[k]),
    );
    const oc = parseProviderConfig(olds).connection;
    const next = parseProviderConfig(news);
    const nc = next.connection;
    const moved =
      (next.unknown && nc === undefined) ||
      (oc ? connectionIdentity(oc) : "") !== (nc ? connectionIdentity(nc) : "");
    const identityKeys = changed.filter((k) => ["connection", "host", "port", "proxy"].includes(k));
    const replaces = moved ? (identityKeys.length ? identityKeys : changed) : [];
    return {
      changes: changed.length > 0,
      replaces,
      deleteBeforeReplace: replaces.length > 0,
      detailedDiff: Object.fromEntries(
        changed.map((k) => {
          const kind = o[k] === undefined ? "ADD" : n[k] === undefined ? "DELETE" : "UPDATE";
          return [k, replaces.includes(k) ? `${kind}_REPLACE` : kind];
        }),
      ),
    };
  }

  /**
   * Takes the provider's connection; connections open lazily on the first operation needing one.
   * A configuration not known yet (the engine skips Configure then, but a caller may not) leaves
   * the provider answering previews with unknown outputs and refusing to change a host.
   */
  configure(args: Props): void {
    const parsed = parseProviderConfig(args);
    if (parsed.failures.length > 0) {
      throw new Error(
        `hypervisor provider configuration is invalid: ${parsed.failures.map((f) => f.reason).join("; ")}`,
      );
    }
    this.configUnknown = parsed.unknown;
    this.connection = parsed.unknown ? undefined : parsed.connection;
  }

  private module(token: string): {
    type: string;
    mod: AnyModule;
    lc: Lifecycle<{ name: string }, unknown>;
  } {
    const type = resourceTypeOf(token);
    const mod = resourceModules[type]!;
    let lc = this.lifecycles.get(type);
    if (!lc) {
      lc = new Lifecycle(mod, this.hostFactory, { hostLock: this.hostFactory === hostFor });
      this.lifecycles.set(type, lc);
    }
    return { type, mod, lc };
  }

  /** The resource's own connection, else the provider's (plain values; UNKNOWN when not known). */
  private withConnection(plain: Props): Props {
    if (plain["connection"] !== undefined && plain["connection"] !== null) return plain;
    if (this.configUnknown) return { ...plain, connection: UNKNOWN };
    return this.connection ? { ...plain, connection: this.connection } : plain;
  }

  /** Plain inputs for an operation that changes or reads a host: the connection must be known. */
  private known(plain: Props, what: string): Props {
    const p = this.withConnection(plain);
    if (containsUnknown(p["connection"])) {
      throw new Error(
        `cannot ${what}: the connection is not known yet (it is computed by another resource)`,
      );
    }
    return p;
  }

  check(token: string, news: Props): { inputs: Props; failures: CheckFailure[] } {
    const { lc } = this.module(token);
    const plain = stripEngineKeys(unwrapSecrets(news) as Props);
    const own = plain["connection"] !== undefined && plain["connection"] !== null;
    if (!own && !this.connection && !this.configUnknown) {
      const { failures } = lc.check({}, { ...plain, connection: UNKNOWN });
      const required = {
        property: "connection",
        reason:
          "connection: is required: set it on the resource or give the provider one " +
          "(a Provider with `connection`, or stack config hypervisor:host)",
      };
      return { inputs: news, failures: [required, ...failures] };
    }
    return { inputs: news, failures: lc.check({}, this.withConnection(plain)).failures };
  }

  diff(token: string, olds: Props, news: Props, oldInputs?: Props): NativeDiff {
    const { lc } = this.module(token);
    const d = lc.diff(
      "",
      this.withConnection(unwrapSecrets(olds) as Props),
      this.withConnection(stripEngineKeys(unwrapSecrets(news) as Props)),
      oldInputs === undefined
        ? undefined
        : this.withConnection(stripEngineKeys(unwrapSecrets(oldInputs) as Props)),
    );
    return {
      changes: d.changes,
      replaces: d.replaces,
      deleteBeforeReplace: d.deleteBeforeReplace,
      detailedDiff: d.detailedDiff,
    };
  }

  /** Outputs for the engine: `connection` only when the resource set it, secret; secret inputs stay secret. */
  private finish(raw: Props, outs: Props): Props {
    const out: Props = dropUndefined({ ...outs });
    const own = raw["connection"] !== undefined && raw["connection"] !== null;
    if (!own) delete out["connection"];
    for (const k of new Set([...secretKeys(raw), ...(own ? ["connection"] : [])])) {
      if (out[k] !== undefined) out[k] = secret(unwrapSecrets(out[k]));
    }
    return out;
  }

  private rethrow(raw: Props, e: unknown): never {
    if (e instanceof InitFailedError && e.id !== undefined) {
      throw new InitFailedError(e.message, e.id, this.finish(raw, e.properties ?? {}));
    }
    throw e;
  }

  /** What a create or update would do: canonical inputs, known outputs, the steps (when observable). */
  private async previewOf(
    _type: string,
    mod: AnyModule,
    raw: Props,
    creating = false,
  ): Promise<Props> {
    const plain = this.withConnection(stripEngineKeys(unwrapSecrets(raw) as Props));
    const unknownOutputs = Object.fromEntries(
      Object.keys(mod.outputSchema.shape).map((k) => [k, UNKNOWN]),
    );
    if (containsUnknown(plain)) return this.finish(raw, { ...raw, ...unknownOutputs });
    const parsed = parseAll(mod, plain);
    if ("failures" in parsed) {
      throw new Error(
        `${mod.noun} inputs are invalid: ${parsed.failures.map((f) => f.reason).join("; ")}`,
      );
    }
    const inputs = parsed.inputs as Props & { name: string };
    const host = this.hostFactory(parsed.connection);
    const what = `${mod.noun} ${JSON.stringify(inputs.name)} on ${host.label}`;
    const linkOn = (link: string): string => JSON.stringify([host.label, link]);
    if (creating && mod.link) this.previewedLinks.add(linkOn(mod.link(inputs)));
    const observing = observeForPreview(mod, host, inputs, this.cancelling.signal, creating);
    // A host that cannot be reached must not fail the preview: show the plan without steps.
    observing.catch(() => undefined);
    let state: unknown;
    try {
      state = await withTimeout(observing, PREVIEW_OBSERVE_MS);
    } catch (e) {
      logWarn(`${what}: preview without steps: ${e instanceof Error ? e.message : String(e)}`);
      return this.finish(raw, { ...raw, ...inputs, ...unknownOutputs });
    }
    let steps: Step[];
    try {
      steps = mod.plan(inputs, state);
    } catch (e) {
      // What the plan refuses (a bridge, interface or tap that does not exist yet) may be made by
      // another resource earlier in the same update: show the plan without steps; up will tell.
      if (!(e instanceof PlanError)) throw e;
      // The link the plan needs had a preview of its own create in this update: a status, no warning
      // (whether the program makes this resource wait for it is the engine's to know, not ours).
      const link = e.missingLink;
      if (link !== undefined && this.previewedLinks.has(linkOn(link))) {
        logStatus(
          `${what}: preview without steps: ${JSON.stringify(link)} is not on the host yet; this update creates it`,
        );
      } else {
        logWarn(`${what}: preview without steps: ${e.message}`);
      }
      return this.finish(raw, { ...raw, ...inputs, ...unknownOutputs });
    }
    const outputs = mod.exists(state) && steps.length === 0 ? mod.outputs(state) : unknownOutputs;
    return this.finish(raw, {
      ...raw,
      ...inputs,
      ...outputs,
      plannedSteps: steps.map(describeStep),
    });
  }

  async create(
    token: string,
    news: Props,
    preview: boolean,
    timeoutSeconds = 0,
  ): Promise<{ id: string; properties: Props }> {
    const { type, mod, lc } = this.module(token);
    if (preview) return { id: "", properties: await this.previewOf(type, mod, news, true) };
    const plain = this.known(stripEngineKeys(unwrapSecrets(news) as Props), "create");
    try {
      const r = await lc.create(plain, this.operation(timeoutSeconds));
      return { id: r.id, properties: this.finish(news, r.outs) };
    } catch (e) {
      return this.rethrow(news, e);
    }
  }

  async update(
    token: string,
    id: string,
    olds: Props,
    news: Props,
    preview: boolean,
    timeoutSeconds = 0,
  ): Promise<Props> {
    const { type, mod, lc } = this.module(token);
    if (preview) return this.previewOf(type, mod, news);
    const plain = this.known(stripEngineKeys(unwrapSecrets(news) as Props), "update");
    try {
      const r = await lc.update(
        id,
        this.withConnection(unwrapSecrets(olds) as Props),
        plain,
        this.operation(timeoutSeconds),
      );
      return this.finish(news, r.outs);
    } catch (e) {
      return this.rethrow(news, e);
    }
  }

  /** Refresh (properties given) or import (nothing but the id given). */
  async read(
    token: string,
    id: string,
    properties: Props,
    inputs: Props | undefined,
  ): Promise<{ id: string; properties: Props; inputs?: Props }> {
    const { type, mod, lc } = this.module(token);
    if (
      Object.keys(properties).length === 0 &&
      (inputs === undefined || Object.keys(inputs).length === 0)
    ) {
      return this.importOf(type, mod, id);
    }
    const r = await lc.read(
      id,
      this.known(unwrapSecrets(properties) as Props, "read"),
      this.operation(),
    );
    if (r.id === "") return { id: "", properties: {} };
    const out: { id: string; properties: Props; inputs?: Props } = {
      id: r.id,
      properties: this.finish(properties, r.props),
    };
    if (inputs !== undefined) {
      // Inputs the program set take the observed value, so drift shows against them too.
      const next: Props = { ...inputs };
      const given = parseAll(
        mod,
        this.withConnection(stripEngineKeys(unwrapSecrets(inputs) as Props)),
      );
      const canonical: Props = "inputs" in given ? (given.inputs as Props) : {};
      for (const k of mod.inputKeys) {
        // Equal to the observed value once defaults are filled in: keep what the program wrote.
        if (next[k] === undefined || r.props[k] === undefined) continue;
        if (!isDeepStrictEqual(plainJson(canonical[k]), plainJson(r.props[k])))
          next[k] = r.props[k];
      }
      out.inputs = this.finish(inputs, { ...next, connection: inputs["connection"] });
    }
    return out;
  }

  private async importOf(
    type: string,
    mod: AnyModule,
    id: string,
  ): Promise<{ id: string; properties: Props; inputs?: Props }> {
    if (!this.connection) {
      throw new Error(
        `cannot import ${type} ${JSON.stringify(id)}: the provider has no connection ` +
          "(give it one: a Provider with `connection`, or stack config hypervisor:host)",
      );
    }
    const parsed = mod.inputs.safeParse({ name: id });
    if (!parsed.success) {
      throw new Error(
        `cannot import ${type} ${JSON.stringify(id)} from its id alone: ` +
          parsed.error.issues.map((i) => `${i.path.join(".") || "id"}: ${i.message}`).join("; "),
      );
    }
    const host = this.hostFactory(this.connection);
    const what = `${mod.noun} ${JSON.stringify(id)} on ${host.label}`;
    let state: unknown;
    try {
      state = await observeForPreview(mod, host, parsed.data, this.cancelling.signal);
    } catch (e) {
      throw new Error(`${what}: observing failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!mod.exists(state)) return { id: "", properties: {} };
    const observed = dropUndefined({ name: id, ...mod.observedInputs(state, parsed.data) });
    return {
      id,
      properties: dropUndefined({ ...observed, ...mod.outputs(state) }),
      inputs: observed,
    };
  }

  async delete(token: string, id: string, properties: Props, timeoutSeconds = 0): Promise<void> {
    const { lc } = this.module(token);
    await lc.delete(
      id,
      this.known(unwrapSecrets(properties) as Props, "delete"),
      this.operation(timeoutSeconds),
    );
  }
}

// Read-only and outside the host lock: observations the engine asks for at once share a command.
async function observeForPreview(
  mod: AnyModule,
  pooled: Host,
  inputs: unknown,
  signal: AbortSignal,
  creating = false,
): Promise<unknown> {
  const ctx = await observeContext(abortableHost(pooled, signal), mod, true);
  return observeCoalesced(mod, pooled, inputs, creating ? { ...ctx, creating } : ctx, signal);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`host not observed within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
