import type { z } from "zod";
import { Connection, connectionIdentity } from "./host/connection";
import { parseHostKeyPin } from "./host/host-keys";
import { abortableHost, type OperationOptions } from "./abort";
import { applySteps } from "./apply";
import {
  CommandError,
  InitFailedError,
  messageOf,
  PlanError,
  SshConnectionError,
  StepError,
} from "./errors";
import type { Host, RunResult } from "./host/host";
import { withHostLock } from "./host/lock";
import { logInfo, logWarn } from "./log";
import { runScript, scriptIn } from "./host/script";
import { observeCoalesced } from "./observe-batch";
import {
  probeCommand,
  probeOutput,
  type ObserveContext,
  type ProbeCommand,
  type ResourceModule,
} from "./resource";
import { stableJson } from "./stable-json";
import type { Step } from "./step";
import { containsUnknown, unknownAt } from "./unknown";

export type { OperationOptions };

export interface CheckFailure {
  property: string;
  reason: string;
}

type Props = Record<string, unknown>;

/** How the lifecycle reaches a host; tests pass a fake, the provider passes the SSH pool. */
export type HostFactory = (connection: Connection) => Host;

export interface LifecycleOptions {
  /** Hold the host-side lock (host/lock.ts) over create, update and delete. */
  hostLock?: boolean;
}

/** Returns "addresses[1]" for the zod path ["addresses", 1]. */
export function propertyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

function failuresOf(error: z.ZodError, prefix: string): CheckFailure[] {
  return error.issues.map((issue) => {
    const property = propertyPath([...(prefix ? [prefix] : []), ...issue.path]);
    return { property, reason: `${property || "inputs"}: ${issue.message}` };
  });
}

function stripProvider(props: Props): Props {
  const { __provider: _ignored, ...rest } = props;
  return rest;
}

/** Returns the parsed connection and inputs, or the check failures naming each bad property. */
export function parseAll<I extends { name: string }, S>(
  mod: ResourceModule<I, S>,
  props: Props,
  from: "inputs" | "outputs" = "inputs",
): { connection: Connection; inputs: I } | { failures: CheckFailure[] } {
  const { connection, ...all } = stripProvider(props);
  const rest = from === "inputs" ? all : pick(all, mod.inputKeys);
  const failures: CheckFailure[] = [];
  const c = Connection.safeParse(connection);
  if (!c.success) {
    // Connection values can be secrets, so only the property and zod's reason are reported.
    failures.push(
      ...(connection === undefined
        ? [{ property: "connection", reason: "connection: is required" }]
        : failuresOf(c.error, "connection")),
    );
  }
  const i = mod.inputs.safeParse(rest);
  if (!i.success) failures.push(...failuresOf(i.error, ""));
  if (!c.success || !i.success) return { failures };
  return { connection: c.data, inputs: i.data };
}

function pick(props: Props, keys: readonly string[]): Props {
  return Object.fromEntries(Object.entries(props).filter(([k]) => keys.includes(k)));
}

/** How the engine shows one changed property (pulumirpc.PropertyDiff.Kind). */
export type PropertyDiffKind =
  "ADD" | "ADD_REPLACE" | "DELETE" | "DELETE_REPLACE" | "UPDATE" | "UPDATE_REPLACE";

export interface DiffResult {
  changes: boolean;
  replaces: string[];
  deleteBeforeReplace: boolean;
  /** Input properties that differ. */
  changed: string[];
  /** Property name -> kind, for every changed input (consistent with `replaces`). */
  detailedDiff: Record<string, PropertyDiffKind>;
}

// Connection fields that say where it leads (connectionIdentity); the rest are credentials.
const WHERE_FIELDS = ["host", "port", "proxy"];

/** Returns whether a connection holding unknowns may lead somewhere else than `old`. */
function unknownConnectionMoves(value: unknown, old: Connection | undefined): boolean {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return true;
  const fields = value as Props;
  if (WHERE_FIELDS.some((k) => containsUnknown(fields[k]))) return true;
  if (!old) return true;
  // Only credentials are unknown: compare where the known fields lead.
  const known = Object.fromEntries(Object.entries(fields).filter(([, v]) => !containsUnknown(v)));
  const c = Connection.safeParse({ ...(old as Props), ...known });
  return !c.success || connectionIdentity(c.data) !== connectionIdentity(old);
}

// The same pinned host key behind two addresses (a name and its IP, or a bastion) is one machine.
function sameHostKey(a: Connection, b: Connection): boolean {
  const pa = a.hostKey === undefined ? undefined : parseHostKeyPin(a.hostKey);
  const pb = b.hostKey === undefined ? undefined : parseHostKeyPin(b.hostKey);
  return pa !== undefined && pa.fingerprint === pb?.fingerprint;
}

function kindOf(before: unknown, after: unknown, replace: boolean): PropertyDiffKind {
  const kind = before === undefined ? "ADD" : after === undefined ? "DELETE" : "UPDATE";
  return replace ? `${kind}_REPLACE` : kind;
}

/**
 * Returns what changed between the recorded outputs and the new inputs. Pure: no host is contacted.
 * An optional input left unset is not managed, so an observed value in the outputs is no change.
 * A value another resource computes (unknown during a preview) counts as changed: an identity input
 * or a connection that may lead elsewhere plans a replace, any other input an update. `oldInputs`
 * (what the program said last time, when the engine sends it) tells an added or removed property.
 */
export function diffProps<I extends { name: string }, S>(
  mod: ResourceModule<I, S>,
  olds: Props,
  news: Props,
  oldInputs?: Props,
): DiffResult {
  const changed: string[] = [];
  const replaces: string[] = [];
  const oldConn = Connection.safeParse(olds["connection"]);
  const newConn = Connection.safeParse(news["connection"]);
  let otherHost = false;
  if (containsUnknown(news["connection"])) {
    changed.push("connection");
    const old = oldConn.success ? oldConn.data : undefined;
    if (unknownConnectionMoves(news["connection"], old)) replaces.push("connection");
  } else if (oldConn.success && newConn.success) {
    // Only where the connection leads makes a different object. Rotated credentials are an
    // update that touches nothing on the host: it records them, because refresh and delete only
    // get the recorded outputs, and with the old key (or an old pinned host key) they would fail.
    if (connectionIdentity(oldConn.data) !== connectionIdentity(newConn.data)) {
      changed.push("connection");
      replaces.push("connection");
      otherHost = !sameHostKey(oldConn.data, newConn.data);
    } else if (stableJson(oldConn.data) !== stableJson(newConn.data)) {
      changed.push("connection");
    }
  }
  const oldIn = mod.inputs.safeParse(pick(olds, mod.inputKeys));
  const o = (oldIn.success ? oldIn.data : {}) as Props;
  // Unknown inputs are compared as changed; the known ones are parsed with the old values in
  // their place, so defaults and canonical forms still apply to the rest.
  const raw = stripProvider(omit(news, "connection"));
  const unknown = Object.keys(raw).filter((k) => containsUnknown(raw[k]));
  const known: Props = { ...raw };
  for (const k of unknown) {
    if (o[k] === undefined) delete known[k];
    else known[k] = o[k];
  }
  const newIn = mod.inputs.safeParse(known);
  if (newIn.success) {
    const n = newIn.data as Props;
    for (const key of Object.keys(n)) {
      if (n[key] === undefined || unknown.includes(key)) continue;
      if (stableJson(o[key]) !== stableJson(n[key])) {
        changed.push(key);
        if (mod.identity.includes(key)) replaces.push(key);
      }
    }
  }
  for (const key of unknown) {
    changed.push(key);
    if (mod.identity.includes(key)) replaces.push(key);
  }
  const before = oldInputs ?? olds;
  return {
    changes: changed.length > 0,
    replaces,
    // Names are unique per host, so a replacement on the same host must delete first; on another
    // host nothing can clash, and creating first keeps the old object when the new one fails.
    deleteBeforeReplace: replaces.length > 0 && !otherHost,
    changed,
    detailedDiff: Object.fromEntries(
      changed.map((k) => [k, kindOf(before[k], news[k], replaces.includes(k))]),
    ),
  };
}

function omit(props: Props, key: string): Props {
  const { [key]: _ignored, ...rest } = props;
  return rest;
}

// The session's ends cost a command on a host's first operation (none where a shell's hello
// brought them): asked only when a module uses them.
/**
 * Returns what an observation of `mod` needs: the host, the client address and the session's port
 * if it asks. `shared`: the observation rides in a batch with others (observeCoalesced), so the
 * operation runs no command of its own.
 */
export async function observeContext(
  host: Host,
  mod: Pick<ResourceModule<{ name: string }, unknown>, "needsClientAddress" | "needsSessionPort">,
  shared = false,
): Promise<ObserveContext> {
  const ask = mod.needsClientAddress === true && host.sessionClientAddress !== undefined;
  const askPort = mod.needsSessionPort === true && host.sessionServerPort !== undefined;
  const opts = { ownCommand: !shared };
  const [address, port] = await Promise.all([
    ask ? host.sessionClientAddress?.(opts) : undefined,
    askPort ? host.sessionServerPort?.(opts) : undefined,
  ]);
  return {
    sshClientAddress: address,
    ...(port !== undefined ? { sshServerPort: port } : {}),
    host: host.label,
  };
}

/** An observation shared with others asked of the same host at once (never under the host lock). */
interface Shared {
  readonly raw: Host;
  readonly signal: AbortSignal | undefined;
}

/** The generic check/diff/create/read/update/delete of one resource type. */
export class Lifecycle<I extends { name: string }, S> {
  /**
   * Replacements Diff planned delete-first, by the old object's outputs: the engine sends
   * Delete of the old object before Create of the new one, and Delete checks the new one first.
   */
  private readonly replacements = new Map<
    string,
    { news: Props; at: number; createFirst: boolean }
  >();

  constructor(
    readonly mod: ResourceModule<I, S>,
    private readonly hostFor: HostFactory,
    private readonly opts: LifecycleOptions = {},
  ) {}

  // Runs a changing operation under the host lock of the object (when enabled), so conflicting
  // operations on one host never interleave their observe, apply and observe.
  private locked<T>(
    raw: Host,
    inputs: I,
    signal: AbortSignal | undefined,
    fn: (host: Host) => Promise<T>,
  ): Promise<T> {
    if (!this.opts.hostLock) return fn(abortableHost(raw, signal));
    const keys = [`${this.mod.type}.${inputs.name}`, ...(this.mod.lockKeys?.(inputs) ?? [])];
    return withHostLock(raw, keys, signal, (h) => fn(abortableHost(h, signal)));
  }

  private what(name: string, host: Host): string {
    return `${this.mod.noun} ${JSON.stringify(name)} on ${host.label}`;
  }

  /**
   * Validates inputs; never contacts a host. A value another resource computes (unknown during a
   * preview) is never a failure: it is checked when it is known. Known values beside it still are.
   */
  check(_olds: Props, news: Props): { inputs: Props; failures: CheckFailure[] } {
    const parsed = parseAll(this.mod, news);
    const failures = "failures" in parsed ? parsed.failures : [];
    return { inputs: news, failures: failures.filter((f) => !unknownAt(news, f.property)) };
  }

  /** Returns what changed; pure, so a preview with unknown inputs never touches a host. */
  diff(_id: string, olds: Props, news: Props, oldInputs?: Props): DiffResult {
    const d = diffProps(this.mod, olds, news, oldInputs);
    const key = replacementKey(olds);
    if (d.replaces.length > 0 && !containsUnknown(news)) {
      this.replacements.set(key, { news, at: Date.now(), createFirst: !d.deleteBeforeReplace });
    } else {
      this.replacements.delete(key);
    }
    return d;
  }

  // The replacement of this object that Diff planned, if any.
  private takeReplacement(props: Props): { news: Props; createFirst: boolean } | undefined {
    const key = replacementKey(props);
    const r = this.replacements.get(key);
    this.replacements.delete(key);
    return r && Date.now() - r.at < REPLACEMENT_TTL_MS ? r : undefined;
  }

  /**
   * Whether a replacement created first, with the same id, is this very object: two addresses of
   * one machine without a pinned host key look like two hosts to Diff, and deleting the old object
   * would then delete the new one. Unknown (a host that cannot tell) counts as not.
   */
  private async sameObject(old: Host, news: Props, id: string): Promise<boolean> {
    const parsed = parseAll(this.mod, news);
    if ("failures" in parsed || this.mod.id(parsed.inputs) !== id) return false;
    const identity = async (h: Host): Promise<string | undefined> => {
      try {
        const r = await runScript(h, scriptIn(__dirname, "host/host-identity.sh", []));
        return r.stdout.trim() || undefined;
      } catch {
        return undefined;
      }
    };
    const [a, b] = await Promise.all([identity(old), identity(this.hostFor(parsed.connection))]);
    return a !== undefined && a === b;
  }

  /**
   * Throws when the replacement would fail on this host (a PlanError against what is there, or
   * the host unreachable with its connection), before anything of the old object is deleted. A
   * refusal that names the old object itself (it is in the way of a renamed one) is not one: the
   * delete is what clears it.
   */
  private async checkReplacement(
    news: Props,
    old: I,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<void> {
    const parsed = parseAll(this.mod, news);
    if ("failures" in parsed) return; // Check refuses these before any Create
    const raw = this.hostFor(parsed.connection);
    const host = abortableHost(raw, signal);
    const desired = parsed.inputs;
    try {
      // A replacement is a create, except of the same name: that link is the old object itself.
      const base = await observeContext(host, this.mod, true);
      const creating = desired.name !== old.name;
      const ctx = creating ? { ...base, creating } : base;
      const state = await observeCoalesced(this.mod, raw, desired, ctx, signal);
      this.mod.plan(desired, state);
    } catch (e) {
      const msg = messageWithoutHost(e, host);
      if (e instanceof PlanError && desired.name !== old.name && mentions(msg, old.name)) return;
      throw new Error(
        `${what}: not deleted, because its replacement ${JSON.stringify(desired.name)} would fail: ${msg}`,
      );
    }
  }

  private connect(
    props: Props,
    from: "inputs" | "outputs",
    signal: AbortSignal | undefined,
  ): { host: Host; raw: Host; inputs: I; connection: Connection } {
    const parsed = parseAll(this.mod, props, from);
    if ("failures" in parsed) {
      throw new Error(
        `${this.mod.noun} inputs are invalid: ${parsed.failures.map((f) => f.reason).join("; ")}`,
      );
    }
    const raw = this.hostFor(parsed.connection);
    return { ...parsed, raw, host: abortableHost(raw, signal) };
  }

  /**
   * Observe, plan, apply, observe again; fails naming the steps that did not take. Any failure once
   * the first step was sent (an abort included: its command may have done part of its work) carries
   * the id: the engine records the object and the next update converges it. The observation after
   * apply runs in the apply's last remote command: two round trips in all.
   */
  private async converge(
    host: Host,
    desired: I,
    id: string,
    props: Props,
    creating: boolean,
  ): Promise<S> {
    const what = this.what(desired.name, host);
    const ctx = await observeContext(host, this.mod);
    // Only the first look is a create's: after apply the object is the provider's own.
    const before = await this.observe(host, desired, creating ? { ...ctx, creating } : ctx, what);
    const existed = this.mod.exists(before);
    const steps = this.plan(desired, before, what);
    if (steps.length === 0 && existed) return before;
    logInfo(...steps.map((step) => `${what}: ${step.summary}`));
    // From the first step on the host may have changed, so every failure (a step, a lost
    // connection, the observation after apply, a plan that refuses it) carries the id: the engine
    // records the object and the next update finishes it, or destroy removes it.
    try {
      const after = await this.applyAndObserve(host, steps, desired, ctx, what, "converge");
      const rest = this.plan(desired, after, what);
      if (!this.mod.exists(after) || rest.length > 0) {
        const missing = rest.length ? rest.map((s) => s.summary).join("; ") : "it is absent";
        throw new Error(`${what}: changes did not take; still to do after apply: ${missing}`);
      }
      return after;
    } catch (e) {
      throw new InitFailedError(this.failureText(e, host, what, steps), id, props);
    }
  }

  // A step's failure names its command; a lost connection names the step it interrupted
  // (its summary), not the body of the remote script that carried it.
  private failureText(
    e: unknown,
    host: Host,
    what: string,
    steps: readonly Step[],
    next = "the next update finishes it",
  ): string {
    const cause = e instanceof StepError ? e.cause : e;
    const msg = messageOf(cause);
    if (msg.startsWith(`${what}: `)) return msg;
    if (e instanceof StepError && cause instanceof SshConnectionError) {
      const step = steps[e.done];
      const where = step
        ? ` applying from step ${e.done + 1} of ${steps.length} (${step.summary})`
        : "";
      // "lost" and "channel" messages quote the whole command; the others are short and useful.
      if (cause.kind === "lost" || cause.kind === "channel") {
        const happened = cause.kind === "lost" ? "connection lost" : "no session could be opened";
        return `${what}: ${happened}${where}; the host may be half-changed, ${next}`;
      }
      return `${what}: ${messageWithoutHost(cause, host)}${where}`;
    }
    return `${what}: ${messageWithoutHost(cause, host)}`;
  }

  // Applies the steps and returns the state after them, observed in the apply's last command when
  // it can be (otherwise by a probe of its own). Step failures are thrown as applySteps throws them.
  private async applyAndObserve(
    host: Host,
    steps: readonly Step[],
    inputs: I,
    ctx: ObserveContext,
    what: string,
    after: "converge" | "delete",
  ): Promise<S> {
    // What it sees is checked against the plan, never applied: a look-only probe is enough, and
    // after a delete one that asks only what a delete's plan reads.
    const look = { ...ctx, lookOnly: true, after };
    const probe = probeCommand(this.mod.probe(inputs, look));
    const r = await applySteps(host, steps, probe);
    // A result without the probe's output (a guarded apply) leaves it to a probe of its own.
    if (r === undefined) return this.observe(host, inputs, look, what);
    return this.parsed(host, probe, r, inputs, look, what);
  }

  private parsed(
    host: Host,
    probe: ProbeCommand,
    r: RunResult,
    inputs: I,
    ctx: ObserveContext,
    what: string,
  ): S {
    try {
      return this.mod.parse(probeOutput(host.label, probe, r), inputs, ctx);
    } catch (e) {
      throw new Error(`${what}: observing failed: ${messageWithoutHost(e, host)}`);
    }
  }

  private async observe(
    host: Host,
    desired: I,
    ctx: ObserveContext,
    what: string,
    shared?: Shared,
  ): Promise<S> {
    try {
      if (shared) return await observeCoalesced(this.mod, shared.raw, desired, ctx, shared.signal);
      return await this.mod.observe(host, desired, ctx);
    } catch (e) {
      // A lost connection's message quotes the whole probe script: say what happened instead.
      const why =
        e instanceof SshConnectionError && (e.kind === "lost" || e.kind === "channel")
          ? e.kind === "lost"
            ? "connection lost"
            : "no session could be opened"
          : messageWithoutHost(e, host);
      throw new Error(`${what}: observing failed: ${why}`);
    }
  }

  private plan(desired: I | undefined, actual: S, what: string): Step[] {
    try {
      return this.mod.plan(desired, actual);
    } catch (e) {
      throw new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  async create(props: Props, opts: OperationOptions = {}): Promise<{ id: string; outs: Props }> {
    const { raw, inputs } = this.connect(props, "inputs", opts.signal);
    const id = this.mod.id(inputs);
    const state = await this.locked(raw, inputs, opts.signal, (host) =>
      this.converge(host, inputs, id, props, true),
    );
    return { id, outs: this.outputsOf(props, inputs, state) };
  }

  async update(
    _id: string,
    _olds: Props,
    news: Props,
    opts: OperationOptions = {},
  ): Promise<{ outs: Props }> {
    const { raw, inputs } = this.connect(news, "inputs", opts.signal);
    const id = this.mod.id(inputs);
    const state = await this.locked(raw, inputs, opts.signal, (host) =>
      this.converge(host, inputs, id, news, false),
    );
    return { outs: this.outputsOf(news, inputs, state) };
  }

  // Inputs are recorded in canonical form (defaults filled in, CIDRs as `ip` prints them), so a
  // refresh compares like with like and only real drift shows.
  private outputsOf(props: Props, inputs: I, state: S): Props {
    return { ...stripProvider(props), ...(inputs as Props), ...this.mod.outputs(state) };
  }

  /**
   * Observes the live object: gone returns an empty id; drift shows in the returned properties and,
   * when there is drift, in the inputs (the recorded input properties with their observed values),
   * which the engine stores so the next diff and `ignoreChanges` compare against the host.
   */
  async read(
    id: string,
    props: Props,
    opts: OperationOptions = {},
  ): Promise<{ id: string; props: Props; inputs?: Props }> {
    const { host, raw, inputs } = this.connect(props, "outputs", opts.signal);
    const what = this.what(inputs.name, host);
    const ctx = { ...(await observeContext(host, this.mod, true)), lookOnly: true };
    const state = await this.observe(host, inputs, ctx, what, { raw, signal: opts.signal });
    if (!this.mod.exists(state)) return { id: "", props: {} };
    const observed = this.mod.observedInputs(state, inputs);
    const merged: Props = { ...stripProvider(props) };
    for (const [k, v] of Object.entries(observed)) {
      if (merged[k] !== undefined) merged[k] = v;
    }
    const out = { id, props: { ...merged, ...this.mod.outputs(state) } };
    // Without drift the engine keeps the inputs it has (the program's own words).
    const drifted = this.mod.inputKeys.some((k) => stableJson(merged[k]) !== stableJson(props[k]));
    if (!drifted) return out;
    return { ...out, inputs: pick(merged, ["connection", ...this.mod.inputKeys]) };
  }

  /** Removes what the resource owns; succeeds when it is already gone. */
  async delete(id: string, props: Props, opts: OperationOptions = {}): Promise<void> {
    const { host: plain, raw, inputs } = this.connect(props, "outputs", opts.signal);
    const what = this.what(inputs.name, plain);
    const replaced = this.takeReplacement(props);
    if (replaced?.createFirst && (await this.sameObject(plain, replaced.news, id))) {
      logWarn(
        `${what}: not deleted: its replacement reaches the same object on the same machine through another address`,
      );
      return;
    }
    if (replaced && !replaced.createFirst) {
      await this.checkReplacement(replaced.news, inputs, opts.signal, what);
    }
    await this.locked(raw, inputs, opts.signal, (host) => this.remove(host, inputs, what));
  }

  // Observe, apply the delete and observe again in its last command: two round trips.
  private async remove(host: Host, inputs: I, what: string): Promise<void> {
    const ctx = await observeContext(host, this.mod);
    const before = await this.observe(host, inputs, ctx, what);
    const steps = this.plan(undefined, before, what);
    if (steps.length === 0) return;
    logInfo(...steps.map((step) => `${what}: ${step.summary}`));
    let after: S;
    try {
      after = await this.applyAndObserve(host, steps, inputs, ctx, what, "delete");
    } catch (e) {
      throw new Error(this.failureText(e, host, what, steps, "deleting again finishes it"));
    }
    const rest = this.plan(undefined, after, what);
    if (rest.length > 0 || this.mod.exists(after)) {
      const still = rest.length ? rest.map((s) => s.summary).join("; ") : "the object itself";
      throw new Error(`${what}: delete did not take; still present: ${still}`);
    }
  }
}

/** How long a replacement planned by Diff waits for its Delete (the engine sends it right after). */
const REPLACEMENT_TTL_MS = 30 * 60 * 1000;

// By the old outputs alone (they name the host and the object): the native Diff has no id.
function replacementKey(olds: Props): string {
  return stableJson(stripProvider(olds)) ?? "";
}

// Whether the message names the interface or object as a whole word (names are [A-Za-z0-9_.-]).
function mentions(msg: string, name: string): boolean {
  const word = name.replace(/[.]/g, "\\.");
  return new RegExp(`(^|[^A-Za-z0-9_.-])"?${word}"?($|[^A-Za-z0-9_.-])`).test(msg);
}

// A CommandError already names the host; strip it so messages read `bridge "br0" on host: cmd ...`.
function messageWithoutHost(e: unknown, host: Host): string {
  const label = e instanceof CommandError ? e.host : host.label;
  const msg = messageOf(e);
  return msg.startsWith(`${label}: `) ? msg.slice(label.length + 2) : msg;
}
