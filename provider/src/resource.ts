import type { z } from "zod";
import { CommandError } from "./errors";
import type { Host, RunResult } from "./host/host";
import { runScript, scriptArgv, scriptDisplayArgv, type ScriptCall } from "./host/script";
import type { Step } from "./step";

/** What the lifecycle knows about the SSH session when it observes a host. */
export interface ObserveContext {
  /** The address the SSH client connects from, as the host sees it (for "do not cut me off" checks). */
  readonly sshClientAddress: string | undefined;
  /**
   * The TCP port the SSH session came in on, as the host sees it (after any DNAT): a port forward
   * of it would send the next login elsewhere. Asked only for a module that says it needs it.
   */
  readonly sshServerPort?: number;
  /** The host's label ("user@host:port"): warnings and per-host caches of a probe name it. */
  readonly host: string;
  /** The operation creates the object: a link of its name that the provider did not make is refused. */
  readonly creating?: boolean;
  /**
   * The state is only looked at (a refresh, or the look after an apply), never planned from for
   * applying: a probe may skip what only such a plan needs (which processes hold a tap).
   */
  readonly lookOnly?: boolean;
  /**
   * The look in an apply's last command, and which apply: a create's or an update's (`converge`:
   * the object is there, and a probe may run the apply's last `ip` lines), or a delete's
   * (`delete`: only whether the object is gone and what a delete's plan reads, so a probe may
   * leave out what only a create or an update plans from: a tap's bridge and uplink, the route to
   * the SSH client, a served interface's addresses).
   */
  readonly after?: "converge" | "delete";
}

/** The one remote command of an observation: a read-only probe script and its stdin, if any. */
export interface ProbeCall {
  readonly call: ScriptCall;
  readonly stdin?: string;
  /** The systemd units the probe asks about, so that a batch of probes asks once for all. */
  readonly units?: ProbeUnits;
  /**
   * The probe runs an apply's last `ip` lines in its own `ip` (apply-batch.sh's ab_ip_run), given
   * after an apply whose steps end with them.
   */
  readonly takesIpLines?: boolean;
}

/**
 * The systemd units a probe asks about (persist/unit-state.sh), by how it asks. A batch of probes
 * asks about them all first, one systemctl per way (apply-batch.sh); a unit left out here is
 * asked about by its probe, as when it runs alone, so this list saves work and changes no answer.
 */
export interface ProbeUnits {
  /** State only (`ask_units UNIT...`: `systemctl is-active`). */
  readonly active?: readonly string[];
  /** State and main pid (`ask_units --pid UNIT...`: `systemctl show`). */
  readonly pid?: readonly string[];
  /** Enablement (`unit_enabled UNIT`: `systemctl is-enabled`). */
  readonly enabled?: readonly string[];
}

/** A command as it travels in a batch: what runs, what errors show, its stdin and its units. */
export interface ProbeCommand {
  readonly argv: readonly string[];
  readonly shown: readonly string[];
  readonly stdin?: string;
  readonly units?: ProbeUnits;
  readonly takesIpLines?: boolean;
}

/** Returns the command that runs the probe on a host (its script by name in errors). */
export function probeCommand(p: ProbeCall): ProbeCommand {
  return {
    argv: scriptArgv(p.call),
    shown: scriptDisplayArgv(p.call),
    ...(p.stdin !== undefined ? { stdin: p.stdin } : {}),
    ...(p.units !== undefined ? { units: p.units } : {}),
    ...(p.takesIpLines ? { takesIpLines: true } : {}),
  };
}

/** Returns the probe's result, or throws the CommandError running it alone would have thrown. */
export function probeOutput(label: string, p: ProbeCommand, r: RunResult): RunResult {
  if (r.exitCode !== 0) throw new CommandError(label, p.shown, r);
  return r;
}

/** How a resource observes: its probe, and the parse of the probe's output. */
export interface Observer<I, S> {
  probe(inputs: I, ctx: ObserveContext): ProbeCall;
  parse(result: RunResult, inputs: I, ctx: ObserveContext): S;
}

/** Observes by running the module's probe alone (one remote command) and parsing its output. */
export async function observeWith<I, S>(
  mod: Observer<I, S>,
  host: Host,
  inputs: I,
  ctx: ObserveContext,
): Promise<S> {
  const p = mod.probe(inputs, ctx);
  const r = await runScript(host, p.call, p.stdin !== undefined ? { stdin: p.stdin } : {});
  return mod.parse(r, inputs, ctx);
}

/** Every output key; a value is undefined when the object is gone (after a half-done create). */
export type OutputValues<O extends z.ZodObject> = {
  [K in keyof z.input<O>]-?: z.input<O>[K] | undefined;
};

/**
 * One resource type: its inputs and outputs, how to observe it on a host, and how to plan changes
 * (pure). `schema.json`, the SDK classes and the reference docs are generated from the type, the
 * description and the two schemas (`npm run generate`).
 */
export interface ResourceModule<
  I extends { name: string },
  S,
  O extends z.ZodObject = z.ZodObject,
> {
  /** "Bridge": the SDK class and token suffix. */
  readonly type: string;
  /** One sentence for the SDK class, the package schema and the reference page. */
  readonly description: string;
  /** "bridge": used in messages (`bridge "br0" on root@h:22: ...`). */
  readonly noun: string;
  /** Inputs without `connection`; parsing applies defaults and canonical forms. */
  readonly inputs: z.ZodType<I, unknown>;
  /** The property names of the inputs (outputs carry more; these are picked from them). */
  readonly inputKeys: readonly string[];
  /** Input properties whose change replaces the object (delete before create). */
  readonly identity: readonly string[];
  id(inputs: I): string;
  /**
   * Host lock keys beyond "<type>.<name>" for objects that conflict with others of another name
   * (a dnsmasq's interface): operations sharing a key run one at a time on a host.
   */
  lockKeys?(inputs: I): string[];
  /**
   * The network link the object is on its host (a bridge's or a tap's name), for an object that is
   * one: another resource's preview that needs that link (PlanError.missingLink) knows the same
   * update creates it first.
   */
  link?(inputs: I): string;
  /**
   * Does the probe need the SSH client's address (`ctx.sshClientAddress`)? Without it the
   * lifecycle never asks the host for it.
   */
  readonly needsClientAddress?: boolean;
  /** Does the plan need the port the SSH session came in on (`ctx.sshServerPort`)? */
  readonly needsSessionPort?: boolean;
  /** The observation's one read-only remote command (it may run batched with others). */
  probe(inputs: I, ctx: ObserveContext): ProbeCall;
  /** The state from the probe's output (exit code 0); the same whether it ran alone or batched. */
  parse(result: RunResult, inputs: I, ctx: ObserveContext): S;
  /**
   * Read-only probes; the state also describes the surroundings (for a plan), present or not.
   * Always `observeWith(probe, parse)`: one remote command.
   */
  observe(host: Host, inputs: I, ctx: ObserveContext): Promise<S>;
  /** Whether the object itself exists in the observed state. */
  exists(state: S): boolean;
  /** Steps that take the host from `actual` to `desired`; `desired` undefined is the delete. */
  plan(desired: I | undefined, actual: S): Step[];
  /** The outputs beyond the inputs, each with `.describe()`, as they are when the object exists. */
  readonly outputSchema: O;
  /** Outputs beyond the inputs, from the observed state; undefined values where it is gone. */
  outputs(state: S): OutputValues<O>;
  /** The inputs as observed (for refresh drift and import): same keys as the inputs. */
  observedInputs(state: S, desired: I): Record<string, unknown>;
}
