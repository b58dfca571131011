// `npm run bench`: converges a fleet of H lab hosts x R resources through the dynamic-provider
// plugin (driven the way the engine drives it), then a no-op refresh, then destroy; once with the
// pooled SSH connection (one per host) and once with one fresh connection per command (the model
// of @pulumi/command, PULUMI_HYPERVISOR_SSH_POOL=off), each without and with added latency on the
// controller-to-host link (bench/relay.ts). SSH connections and sessions (remote commands) are
// counted on the hosts' side, from each lab sshd's log (LogLevel VERBOSE logs "Connection from"
// per connection and "Starting session" per exec channel), so the plugin's own counters are not
// needed. Prints tables and a verdict per target; exits 1 when a run failed (not when a target is
// missed: the figures are the result).
import { execFileSync } from "node:child_process";
import { open, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { startLab, type Lab, type LabHost } from "../test/lab/lab";
import {
  DynamicProviderPlugin,
  Engine,
  type ResourceSpec,
  type StepRecord,
} from "../lab/engine/engine";
import { REPO_ROOT, spec } from "../test/support/harness";
import { startRelay, type Relay } from "./relay";

// ---------------------------------------------------------------------------------------------
// Options

export interface BenchOptions {
  hosts: number;
  resources: number;
  /** Added to each direction of the controller-to-host link in the latency runs. */
  latencyMs: number;
  /** Link delays to run (ms each way); 0 is the direct link. */
  delays: number[];
  modes: Mode[];
  labName: string;
  firstIndex: number;
  /** How the engine orders operations (see Schedule). */
  schedules: Schedule[];
  json: string | undefined;
}

export type Mode = "pooled" | "per-command";
const MODES: readonly Mode[] = ["pooled", "per-command"];

/**
 * serial: hosts at once, each host's resources one after another in dependency order (the test
 * engine's order; per-operation round trips are exact). parallel: every resource as soon as its
 * dependencies are done, like the Pulumi engine's default (unbounded --parallel).
 */
export type Schedule = "serial" | "parallel";
const SCHEDULES: readonly Schedule[] = ["serial", "parallel"];

// My lab indices are 71-89 and guest subnets 198.18.170.0/24 - 198.18.189.0/24: one /24 per host.
const FIRST_INDEX = 71;
const MAX_HOSTS = 19;
const GUEST_NET_BASE = 170;

function usage(): string {
  return [
    "usage: npx tsx bench/fleet.ts [--hosts 3] [--resources 20] [--latency 20] [--delays 0,20]",
    "                              [--modes pooled,per-command] [--schedules serial,parallel]",
    "                              [--json FILE]",
  ].join("\n");
}

/** Returns the options parsed from argv; throws with a specific message on a bad one. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const o: BenchOptions = {
    hosts: 3,
    resources: 20,
    latencyMs: 20,
    delays: [],
    modes: [...MODES],
    labName: "bench",
    firstIndex: FIRST_INDEX,
    schedules: [...SCHEDULES],
    json: undefined,
  };
  let delays: number[] | undefined;
  const int = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min || n > max) {
      throw new Error(`${flag} must be an integer from ${min} to ${max}, not ${String(v)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--hosts":
        o.hosts = int(flag, value, 1, MAX_HOSTS);
        i++;
        break;
      case "--resources":
        o.resources = int(flag, value, 1, 200);
        i++;
        break;
      case "--latency":
        o.latencyMs = int(flag, value, 0, 1000);
        i++;
        break;
      case "--delays":
        delays = (value ?? "").split(",").map((d) => int(flag, d, 0, 1000));
        i++;
        break;
      case "--modes": {
        const modes = (value ?? "").split(",");
        for (const m of modes) {
          if (!(MODES as readonly string[]).includes(m)) {
            throw new Error(`--modes takes ${MODES.join(",")}, not ${JSON.stringify(m)}`);
          }
        }
        o.modes = modes as Mode[];
        i++;
        break;
      }
      case "--schedules": {
        const list = (value ?? "").split(",");
        for (const x of list) {
          if (!(SCHEDULES as readonly string[]).includes(x)) {
            throw new Error(`--schedules takes ${SCHEDULES.join(",")}, not ${JSON.stringify(x)}`);
          }
        }
        o.schedules = list as Schedule[];
        i++;
        break;
      }
      case "--json":
        if (value === undefined) throw new Error("--json needs a file name");
        o.json = value;
        i++;
        break;
      case "--help":
      case "-h":
        throw new Error(usage());
      default:
        throw new Error(`unknown argument ${JSON.stringify(flag)}\n${usage()}`);
    }
  }
  o.delays = delays ?? (o.latencyMs > 0 ? [0, o.latencyMs] : [0]);
  return o;
}

// ---------------------------------------------------------------------------------------------
// The fleet: per host, bridges with addresses, taps on them, one dnsmasq and one NAT rule

export interface FleetShape {
  bridges: number;
  taps: number;
  dnsmasq: boolean;
  nat: boolean;
}

/** Returns how R resources per host are split: a fifth bridges (1-4), dnsmasq, NAT, the rest taps. */
export function fleetShape(resources: number): FleetShape {
  if (resources < 3) return { bridges: resources, taps: 0, dnsmasq: false, nat: false };
  const bridges = Math.min(4, Math.max(1, Math.round(resources / 5)));
  return { bridges, taps: resources - bridges - 2, dnsmasq: true, nat: true };
}

export interface SpecConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  hostKey: string;
}

/**
 * Returns the resource specs of one host (ordinal 0-based within the bench): host ordinal k uses
 * 198.18.(170+k).0/24, bridge b the /26 at 64*b in it.
 */
export async function hostSpecs(
  hostName: string,
  ordinal: number,
  resources: number,
  connection: SpecConnection,
): Promise<ResourceSpec[]> {
  const shape = fleetShape(resources);
  const net = `198.18.${GUEST_NET_BASE + ordinal}`;
  const specs: ResourceSpec[] = [];
  const br = (b: number): string => `${hostName}-bbr${b}`;
  for (let b = 0; b < shape.bridges; b++) {
    specs.push(
      await spec("Bridge", br(b), {
        connection,
        name: `bbr${b}`,
        addresses: [`${net}.${64 * b + 1}/26`],
      }),
    );
  }
  for (let t = 0; t < shape.taps; t++) {
    const b = t % shape.bridges;
    specs.push(
      await spec(
        "TapDevice",
        `${hostName}-btap${t}`,
        { connection, name: `btap${t}`, bridge: `bbr${b}` },
        [br(b)],
      ),
    );
  }
  if (shape.dnsmasq) {
    specs.push(
      await spec(
        "DnsmasqInstance",
        `${hostName}-bdhcp`,
        {
          connection,
          name: "bbr0",
          interface: "bbr0",
          subnet: `${net}.0/26`,
          dhcpRange: { start: `${net}.10`, end: `${net}.50` },
          router: `${net}.1`,
        },
        [br(0)],
      ),
    );
  }
  if (shape.nat) {
    specs.push(
      await spec(
        "NatRule",
        `${hostName}-bnat`,
        {
          connection,
          name: "bench",
          sourceCidr: `${net}.0/24`,
          outInterface: "wan0",
          masquerade: true,
          forward: true,
        },
        [br(0)],
      ),
    );
  }
  return specs;
}

// ---------------------------------------------------------------------------------------------
// Counting on the hosts' side

const CONNECTION_LINE = /\bConnection from \d/;
const SESSION_LINE = /\bStarting session: /;

/** Counts connections and sessions in an sshd log, reading only what was appended since. */
export class SshdLogCounter {
  connections = 0;
  sessions = 0;
  private offset = 0;
  private partial = "";

  constructor(private readonly file: string) {}

  /** Reads the new part of the log; returns the totals so far. Calls are serialized. */
  update(): Promise<{ connections: number; sessions: number }> {
    const next = this.queue.then(() => this.readNew());
    this.queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  // Concurrent reads from the same offset would count the same lines twice.
  private queue: Promise<void> = Promise.resolve();

  private async readNew(): Promise<{ connections: number; sessions: number }> {
    const fh = await open(this.file, "r");
    try {
      const { size } = await fh.stat();
      if (size > this.offset) {
        const buf = Buffer.alloc(size - this.offset);
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        this.offset += bytesRead;
        const text = this.partial + buf.subarray(0, bytesRead).toString("utf8");
        const lines = text.split("\n");
        this.partial = lines.pop() ?? "";
        for (const line of lines) {
          if (CONNECTION_LINE.test(line)) this.connections++;
          else if (SESSION_LINE.test(line)) this.sessions++;
        }
      }
    } finally {
      await fh.close();
    }
    return { connections: this.connections, sessions: this.sessions };
  }
}

type Op = "create" | "read" | "update" | "delete";

export interface OpRecord {
  phase: Phase;
  type: string;
  op: Op;
  sessions: number;
  connections: number;
  ms: number;
}

type Phase = "create" | "refresh" | "destroy";
const PHASES: readonly Phase[] = ["create", "refresh", "destroy"];

function shortType(urn: string): string {
  return urn.slice(urn.lastIndexOf(":") + 1).split("::")[0] ?? urn;
}

function typeOfUrn(urn: string): string {
  // urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:Bridge::name
  const parts = urn.split("::");
  return shortType(parts[2] ?? urn);
}

// The plugin as one host's engine sees it: every host-touching call is counted on that host.
function countingPlugin(
  plugin: DynamicProviderPlugin,
  counter: SshdLogCounter,
  phase: () => Phase,
  records: OpRecord[],
): DynamicProviderPlugin {
  const wrap = <A extends unknown[], R>(op: Op, urnAt: number, f: (...a: A) => Promise<R>) => {
    return async (...args: A): Promise<R> => {
      const before = await counter.update();
      const t0 = performance.now();
      const result = await f(...args);
      const ms = performance.now() - t0;
      const after = await counter.update();
      records.push({
        phase: phase(),
        type: typeOfUrn(String(args[urnAt])),
        op,
        sessions: after.sessions - before.sessions,
        connections: after.connections - before.connections,
        ms,
      });
      return result;
    };
  };
  return new Proxy(plugin, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      const bound = (value as (...a: unknown[]) => Promise<unknown>).bind(target);
      switch (prop) {
        case "create":
          return wrap("create", 0, bound);
        case "read":
          return wrap("read", 1, bound);
        case "update":
          return wrap("update", 1, bound);
        case "delete":
          return wrap("delete", 1, bound);
        default:
          return bound;
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// One run: a mode at a delay

export interface PhaseResult {
  phase: Phase;
  wallMs: number;
  connections: number;
  sessions: number;
  ops: number;
}

export interface RunResult {
  mode: Mode;
  schedule: Schedule;
  delayMs: number;
  hosts: number;
  resources: number;
  phases: PhaseResult[];
  /** Connections opened per host over the whole plugin process (all phases). */
  connectionsPerHost: number[];
  ops: OpRecord[];
  /** Resources a no-op refresh reported as changed, with the output keys that differed. */
  refreshChanges: string[];
}

function changedKeys(detail: unknown): string {
  const d = detail as { before?: Record<string, unknown>; after?: Record<string, unknown> };
  const keys = new Set([...Object.keys(d.before ?? {}), ...Object.keys(d.after ?? {})]);
  const differ = [...keys].filter(
    (k) => JSON.stringify(d.before?.[k]) !== JSON.stringify(d.after?.[k]),
  );
  return differ
    .map((k) => `${k} ${JSON.stringify(d.before?.[k])} -> ${JSON.stringify(d.after?.[k])}`)
    .join(", ");
}

async function verifyHost(h: LabHost, shape: FleetShape, present: boolean): Promise<void> {
  const r = await h.exec(["ip", "-j", "link", "show"]);
  const links = JSON.parse(r.stdout) as Array<{ ifname: string }>;
  const ours = links.filter((l) => /^(bbr|btap)\d+$/.test(l.ifname)).length;
  const want = present ? shape.bridges + shape.taps : 0;
  if (ours !== want) {
    throw new Error(`${h.netns}: expected ${want} bench bridges and taps, found ${ours}`);
  }
}

/** One host's resources, driven in the serial or the parallel schedule. */
class HostDriver {
  private readonly serial: Engine;
  private readonly perResource = new Map<string, Engine>();

  constructor(
    private readonly plugin: DynamicProviderPlugin,
    private readonly specs: ResourceSpec[],
  ) {
    this.serial = new Engine(plugin);
  }

  async run(phase: Phase, schedule: Schedule): Promise<StepRecord[]> {
    if (schedule === "serial") {
      if (phase === "create") return (await this.serial.up(this.specs)).steps;
      if (phase === "refresh") return (await this.serial.refresh()).steps;
      return (await this.serial.destroy()).steps;
    }
    // One engine per resource, each started when what it depends on (create) or what depends
    // on it (destroy) is done: the Pulumi engine's step executor with unbounded parallelism.
    const engineOf = (name: string): Engine => {
      let e = this.perResource.get(name);
      if (!e) {
        e = new Engine(this.plugin);
        this.perResource.set(name, e);
      }
      return e;
    };
    const byName = new Map(this.specs.map((s) => [s.name, s]));
    const started = new Map<string, Promise<StepRecord[]>>();
    const waitFor = (names: string[], f: (n: string) => Promise<StepRecord[]>) =>
      Promise.all(names.map(f));
    if (phase === "refresh") {
      const all = await Promise.all(
        this.specs.map(async (s) => (await engineOf(s.name).refresh()).steps),
      );
      return all.flat();
    }
    const dependents = (name: string): string[] =>
      this.specs.filter((s) => (s.dependsOn ?? []).includes(name)).map((s) => s.name);
    const go = (name: string): Promise<StepRecord[]> => {
      let p = started.get(name);
      if (!p) {
        const spec = byName.get(name);
        if (!spec) throw new Error(`unknown resource ${name}`);
        const { dependsOn, ...alone } = spec;
        p =
          phase === "create"
            ? waitFor(dependsOn ?? [], go).then(
                async () => (await engineOf(name).up([alone])).steps,
              )
            : waitFor(dependents(name), go).then(
                async () => (await engineOf(name).destroy()).steps,
              );
        started.set(name, p);
      }
      return p;
    };
    const all = await Promise.all(this.specs.map((s) => go(s.name)));
    return all.flat();
  }
}

// The plugin loads the provider as `pulumi-hypervisor/provider` through node_modules; a shared
// tree's `npm ci` removes that link, so it is checked before each plugin starts.
function ensureSelfLink(): void {
  try {
    require.resolve("pulumi-hypervisor/provider", { paths: [REPO_ROOT] });
  } catch {
    execFileSync(process.execPath, [path.join(REPO_ROOT, "scripts", "link-self.js")]);
  }
}

async function runOne(
  lab: Lab,
  opts: BenchOptions,
  mode: Mode,
  schedule: Schedule,
  delayMs: number,
  relays: Map<string, Relay>,
  log: (line: string) => void,
): Promise<RunResult> {
  const shape = fleetShape(opts.resources);
  ensureSelfLink();
  const plugin = await DynamicProviderPlugin.start({
    cwd: REPO_ROOT,
    env: { ...process.env, PULUMI_HYPERVISOR_SSH_POOL: mode === "pooled" ? "on" : "off" },
  });
  const records: OpRecord[] = [];
  const refreshChanges: string[] = [];
  let phase: Phase = "create";
  try {
    await plugin.configure({});
    const per = await Promise.all(
      lab.hosts.map(async (h, k) => {
        const relay = relays.get(h.name);
        const conn = h.connection();
        const connection: SpecConnection = relay
          ? { ...conn, host: relay.host, port: relay.port }
          : conn;
        const counter = new SshdLogCounter(h.sshdLogPath);
        const start = await counter.update();
        // Per-operation counts are exact only when a host runs one operation at a time; the
        // parallel schedule is measured per phase only, so its timing is not perturbed.
        const counting =
          schedule === "serial" ? countingPlugin(plugin, counter, () => phase, records) : plugin;
        const specs = await hostSpecs(h.name, k, opts.resources, connection);
        return { h, counter, start, specs, host: new HostDriver(counting, specs) };
      }),
    );
    const phases: PhaseResult[] = [];
    for (const p of PHASES) {
      phase = p;
      const before = await Promise.all(per.map((x) => x.counter.update()));
      const t0 = performance.now();
      await Promise.all(
        per.map(async (x) => {
          const steps = await x.host.run(p, schedule);
          const want = p === "create" ? "create" : p === "refresh" ? "same" : "delete";
          // A refresh may report output drift the program caused itself (see renderReport).
          for (const st of steps.filter((s) => s.op === "refresh-changed")) {
            refreshChanges.push(`${st.name}: ${changedKeys(st.detail)}`);
          }
          const odd = steps.filter(
            (s) => s.op !== want && !(p === "refresh" && s.op === "refresh-changed"),
          );
          if (odd.length > 0 || steps.length !== x.specs.length) {
            throw new Error(
              `${x.h.netns} ${p}: expected ${x.specs.length} ${want} steps, got ` +
                JSON.stringify(steps.map((s) => `${s.op} ${s.name}`)),
            );
          }
        }),
      );
      const wallMs = performance.now() - t0;
      const after = await Promise.all(per.map((x) => x.counter.update()));
      let connections = 0;
      let sessions = 0;
      after.forEach((a, i) => {
        connections += a.connections - (before[i]?.connections ?? 0);
        sessions += a.sessions - (before[i]?.sessions ?? 0);
      });
      phases.push({
        phase: p,
        wallMs,
        connections,
        sessions,
        ops: per.reduce((a, x) => a + x.specs.length, 0),
      });
      log(
        `  ${schedule} ${mode} ${delayMs} ms ${p}: ${(wallMs / 1000).toFixed(2)} s, ` +
          `${connections} connections, ${sessions} sessions`,
      );
      await Promise.all(per.map((x) => verifyHost(x.h, shape, p !== "destroy")));
    }
    const connectionsPerHost = await Promise.all(
      per.map(async (x) => (await x.counter.update()).connections - x.start.connections),
    );
    return {
      mode,
      schedule,
      delayMs,
      hosts: opts.hosts,
      resources: opts.resources,
      phases,
      connectionsPerHost,
      ops: records,
      refreshChanges,
    };
  } finally {
    await plugin.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ") + " |";
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const s = (ms: number): string => (ms / 1000).toFixed(2);

/** Returns the report text: totals per run and phase, ratios, round trips per op, verdicts. */
export function renderReport(opts: BenchOptions, runs: RunResult[]): string {
  const out: string[] = [];
  const shape = fleetShape(opts.resources);
  out.push(
    `fleet: ${opts.hosts} hosts x ${opts.resources} resources ` +
      `(${shape.bridges} bridges, ${shape.taps} taps, ${shape.dnsmasq ? 1 : 0} dnsmasq, ` +
      `${shape.nat ? 1 : 0} nat per host), through the dynamic-provider plugin.`,
    "schedule serial: hosts at once, each host's resources one after another; parallel: every " +
      "resource once its dependencies are done (Pulumi's default).",
    "delay: added to each direction of the controller-to-host link (round trip = 2 x delay).",
    "connections and sessions are counted by the hosts' sshd; sessions/op = remote commands per " +
      "resource operation.",
    "",
  );
  const wallOf = (r: RunResult, phase: Phase | "total"): number =>
    r.phases
      .filter((x) => phase === "total" || x.phase === phase)
      .reduce((a, x) => a + x.wallMs, 0);
  const rows: string[][] = [];
  for (const r of runs) {
    for (const phase of [...PHASES, "total" as const]) {
      const ps = r.phases.filter((x) => phase === "total" || x.phase === phase);
      if (ps.length === 0) continue;
      const conns = ps.reduce((a, p) => a + p.connections, 0);
      const sess = ps.reduce((a, p) => a + p.sessions, 0);
      const ops = ps.reduce((a, p) => a + p.ops, 0);
      rows.push([
        `${r.delayMs} ms`,
        r.schedule,
        r.mode,
        phase,
        s(wallOf(r, phase)),
        String(conns),
        String(sess),
        (sess / Math.max(1, ops)).toFixed(2),
      ]);
    }
  }
  out.push(
    table(
      [
        "delay",
        "schedule",
        "mode",
        "phase",
        "wall s",
        "ssh connections",
        "ssh sessions",
        "sessions/op",
      ],
      rows,
    ),
    "",
  );

  // Ratios at the same delay and schedule: per-command over pooled.
  const pairs: Array<{ delay: number; schedule: Schedule; pooled: RunResult; fresh: RunResult }> =
    [];
  for (const delay of opts.delays) {
    for (const schedule of opts.schedules) {
      const find = (m: Mode): RunResult | undefined =>
        runs.find((r) => r.delayMs === delay && r.schedule === schedule && r.mode === m);
      const pooled = find("pooled");
      const fresh = find("per-command");
      if (
        pooled &&
        fresh &&
        pooled.phases.length === PHASES.length &&
        fresh.phases.length === PHASES.length
      ) {
        pairs.push({ delay, schedule, pooled, fresh });
      }
    }
  }
  const ratioRows = pairs.flatMap(({ delay, schedule, pooled, fresh }) =>
    [...PHASES, "total" as const].map((p) => [
      `${delay} ms`,
      schedule,
      p,
      s(wallOf(pooled, p)),
      s(wallOf(fresh, p)),
      (wallOf(fresh, p) / wallOf(pooled, p)).toFixed(1) + "x",
    ]),
  );
  if (ratioRows.length > 0) {
    out.push(
      table(
        ["delay", "schedule", "phase", "pooled s", "per-command s", "per-command / pooled"],
        ratioRows,
      ),
      "",
    );
  }

  // Remote round trips per operation and resource type: from a serial pooled run (exact there).
  const serialPooled = runs.filter((r) => r.mode === "pooled" && r.schedule === "serial");
  const perOp = serialPooled[0];
  if (perOp) {
    const groups = new Map<string, OpRecord[]>();
    for (const o of perOp.ops) {
      const key = `${o.op} ${o.type}`;
      groups.set(key, [...(groups.get(key) ?? []), o]);
    }
    const opRows = [...groups.entries()].map(([key, list]) => {
      const sess = list.map((o) => o.sessions);
      const ms = list.map((o) => o.ms).sort((a, b) => a - b);
      return [
        key,
        String(list.length),
        String(Math.min(...sess)),
        (sess.reduce((a, b) => a + b, 0) / list.length).toFixed(2),
        String(Math.max(...sess)),
        (ms[Math.floor(ms.length / 2)] ?? 0).toFixed(0),
      ];
    });
    out.push(
      `round trips (ssh sessions) per operation, serial pooled at ${perOp.delayMs} ms ` +
        "(the first operation on a host also asks for $SSH_CONNECTION once):",
      table(["operation", "count", "min", "mean", "max", "median ms"], opRows),
      "",
    );
  }

  const drift = [
    ...new Set(runs.flatMap((r) => r.refreshChanges.map((c) => c.replace(/^h\d+-/, "")))),
  ];
  if (drift.length > 0) {
    out.push(
      "the no-op refresh reported output changes (drift the program caused itself):",
      ...drift.slice(0, 6).map((d) => `  ${d}`),
      "",
    );
  }

  // Targets.
  const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
  const pooledRuns = runs.filter((r) => r.mode === "pooled");
  if (pooledRuns.length > 0) {
    const maxConns = Math.max(...pooledRuns.flatMap((r) => r.connectionsPerHost));
    out.push(
      `target: one SSH connection per host per process: ${verdict(maxConns <= 1)} ` +
        `(most connections one host saw from one pooled plugin process: ${maxConns})`,
    );
  }
  if (serialPooled.length > 0) {
    const creates = serialPooled.flatMap((r) => r.ops.filter((o) => o.op === "create"));
    const maxCreate = Math.max(...creates.map((o) => o.sessions));
    const worst = creates.filter((o) => o.sessions === maxCreate).map((o) => o.type);
    out.push(
      `target: at most 3 remote round trips per resource create: ${verdict(maxCreate <= 3)} ` +
        `(max ${maxCreate}, by ${[...new Set(worst)].join(", ")}; mean ` +
        `${(creates.reduce((a, o) => a + o.sessions, 0) / Math.max(1, creates.length)).toFixed(2)})`,
    );
  }
  for (const { delay, schedule, pooled, fresh } of pairs.filter((x) => x.delay >= 20)) {
    const ratio = wallOf(fresh, "total") / wallOf(pooled, "total");
    out.push(
      `target: at least 5x faster than connection-per-command at ${delay} ms (${schedule}): ` +
        `${verdict(ratio >= 5)} (${ratio.toFixed(1)}x over create + refresh + destroy)`,
    );
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const t0 = performance.now();
  log(
    `starting lab "${opts.labName}": ${opts.hosts} hosts from index ${opts.firstIndex} with a WAN`,
  );
  const lab = await startLab({
    name: opts.labName,
    hosts: opts.hosts,
    wan: true,
    firstIndex: opts.firstIndex,
  });
  const runs: RunResult[] = [];
  let failed = false;
  try {
    for (const delayMs of opts.delays) {
      const relays = new Map<string, Relay>();
      try {
        if (delayMs > 0) {
          for (const h of lab.hosts) {
            relays.set(
              h.name,
              await startRelay({ targetHost: h.address, targetPort: h.port, delayMs }),
            );
          }
        }
        for (const schedule of opts.schedules) {
          for (const mode of opts.modes) {
            runs.push(await runOne(lab, opts, mode, schedule, delayMs, relays, log));
          }
        }
      } finally {
        for (const r of relays.values()) await r.close();
      }
    }
  } catch (e) {
    failed = true;
    log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    await lab.stop();
  }
  log("");
  log(renderReport(opts, runs));
  log(`\nbench took ${s(performance.now() - t0)} s`);
  if (opts.json) {
    await writeFile(
      path.resolve(opts.json),
      JSON.stringify({ options: opts, runs }, null, 2) + "\n",
    );
  }
  process.exitCode = failed ? 1 : 0;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
