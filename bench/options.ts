// The bench's command line, parsed with node:util parseArgs into checked options.
import { parseArgs } from "node:util";
import { LAB_NAME_RE } from "../lab/layout";

export interface BenchOptions {
  hosts: number;
  resources: number;
  /** Added to each direction of the controller-to-host link in the latency runs. */
  latencyMs: number;
  /** Link delays to run (ms each way); 0 is the direct link. */
  delays: number[];
  /**
   * Each direction's rate of the links with a delay, in megabits per second (the relays'); undefined:
   * as fast as loopback. The 0 ms runs have no relay, so no limit.
   */
  bandwidthMbit: number | undefined;
  modes: Mode[];
  /** The lab hosts' name (--lab): two benches at once need two names. */
  labName: string;
  /** How the engine orders operations (see Schedule). */
  schedules: Schedule[];
  json: string | undefined;
  /** The other tools run on the same hosts and job (bench/peers.ts). */
  peers: Peer[];
  /** Run every peer at every delay (set by --peers); else ansible-defaults only at the last. */
  peersEveryDelay: boolean;
  /** Write V8 CPU profiles of every plugin process into this directory. */
  cpuProf: string | undefined;
  quick: boolean;
  /**
   * Runs of each provider mode and of the floor per delay, interleaved (Ansible runs once): the
   * tables show each figure's median, the targets the median of the runs' ratios.
   */
  repeat: number;
}

/**
 * pooled: one connection per host, commands through its remote shells (the default).
 * per-command: one fresh connection per remote command (`@pulumi/command`'s model).
 * baseline: the provider as it was when the controller-CPU target was set (bench/baseline.ts),
 * pooled; what that target's ratio compares with.
 * compressed: pooled, each connection with `compression: true` (for slow links; not run unless
 * asked for).
 */
export type Mode = "pooled" | "per-command" | "baseline" | "compressed";
export const MODES: readonly Mode[] = ["pooled", "per-command", "baseline", "compressed"];
/** The modes a run without --modes runs. */
export const DEFAULT_MODES: readonly Mode[] = ["pooled", "per-command", "baseline"];

/**
 * serial: hosts at once, each host's resources one after another in dependency order (the test
 * engine's order; per-operation round trips are exact). parallel: every resource as soon as its
 * dependencies are done, like the Pulumi engine's default (unbounded --parallel).
 */
export type Schedule = "serial" | "parallel";
export const SCHEDULES: readonly Schedule[] = ["serial", "parallel"];

/** The tools the provider is compared with (bench/peers.ts). */
export type Peer = "ansible-tuned" | "ansible-defaults" | "floor";
export const PEERS: readonly Peer[] = ["ansible-tuned", "ansible-defaults", "floor"];

const MAX_HOSTS = 19;

/** Returns the usage text. */
export function usage(): string {
  return [
    "usage: npx tsx bench/fleet.ts [--hosts 3] [--resources 20] [--latency 20] [--delays 0,20]",
    "                              [--bandwidth MBIT]",
    "                              [--modes pooled,per-command,baseline,compressed]",
    "                              [--schedules serial,parallel]",
    "                              [--peers ansible-tuned,ansible-defaults,floor|none]",
    "                              [--json FILE] [--cpu-prof DIR] [--lab bench] [--repeat 3]",
    "                              [--quick]",
    "--repeat: runs of each provider mode and of the floor per delay; the report gives medians",
    "--quick: 1 host x 5 resources, 0 ms, serial, one run, no baseline, Ansible tuned and the floor",
    "         (a smoke run)",
    "--modes baseline: the provider's code before the work on controller CPU (bench/baseline.ts)",
    "--modes compressed: pooled with compression: true on every connection (default modes: pooled,",
    "         per-command, baseline)",
    "--bandwidth: each direction of the delayed links limited to MBIT megabits per second",
  ].join("\n");
}

/** Returns the integer flag value v; throws naming the flag and its range otherwise. */
export function int(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${flag} must be an integer from ${min} to ${max}, not ${v}`);
  }
  return n;
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T[] {
  const list = value.split(",");
  for (const x of list) {
    if (!(allowed as readonly string[]).includes(x)) {
      throw new Error(`${flag} takes ${allowed.join(",")}, not ${JSON.stringify(x)}`);
    }
  }
  return list as T[];
}

// A lab's name is part of its state directory and namespace names (lab/layout.ts).
function labName(v: string): string {
  if (!LAB_NAME_RE.test(v)) {
    throw new Error(
      `--lab must be a lowercase name of 1-24 letters, digits and dashes, not ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** Returns the options parsed from argv; throws with a specific message on a bad one. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        hosts: { type: "string" },
        resources: { type: "string" },
        latency: { type: "string" },
        delays: { type: "string" },
        bandwidth: { type: "string" },
        modes: { type: "string" },
        schedules: { type: "string" },
        json: { type: "string" },
        peers: { type: "string" },
        "cpu-prof": { type: "string" },
        quick: { type: "boolean" },
        lab: { type: "string" },
        repeat: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${usage()}`);
  }
  if (values.help === true) throw new Error(usage());
  const quick = values.quick === true;
  const latencyMs = values.latency !== undefined ? int("--latency", values.latency, 0, 1000) : 20;
  return {
    hosts: values.hosts !== undefined ? int("--hosts", values.hosts, 1, MAX_HOSTS) : quick ? 1 : 3,
    resources:
      values.resources !== undefined
        ? int("--resources", values.resources, 1, 200)
        : quick
          ? 5
          : 20,
    latencyMs,
    delays:
      values.delays !== undefined
        ? values.delays.split(",").map((d) => int("--delays", d, 0, 1000))
        : quick
          ? [0]
          : latencyMs > 0
            ? [0, latencyMs]
            : [0],
    modes:
      values.modes !== undefined
        ? oneOf("--modes", values.modes, MODES)
        : quick
          ? DEFAULT_MODES.filter((m) => m !== "baseline")
          : [...DEFAULT_MODES],
    bandwidthMbit:
      values.bandwidth !== undefined ? int("--bandwidth", values.bandwidth, 1, 10000) : undefined,
    labName: values.lab !== undefined ? labName(values.lab) : "bench",
    schedules:
      values.schedules !== undefined
        ? oneOf("--schedules", values.schedules, SCHEDULES)
        : quick
          ? ["serial"]
          : [...SCHEDULES],
    json: values.json,
    peers:
      values.peers === "none"
        ? []
        : values.peers !== undefined
          ? oneOf("--peers", values.peers, PEERS)
          : quick
            ? ["ansible-tuned", "floor"]
            : [...PEERS],
    peersEveryDelay: values.peers !== undefined,
    cpuProf: values["cpu-prof"],
    quick,
    repeat: values.repeat !== undefined ? int("--repeat", values.repeat, 1, 9) : quick ? 1 : 3,
  };
}
