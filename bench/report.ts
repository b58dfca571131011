// The bench's report: totals per run and phase, ratios, round trips per operation and verdicts.
import * as os from "node:os";
import { fleetShape } from "./fleet-specs";
import type { PluginAloneResult } from "./plugin-alone";
import type { OpRecord, Phase, RunMemory, RunResult } from "./driver";
import { PHASES } from "./driver";
import { mb } from "./memory";
import type { BenchOptions, Mode, Schedule } from "./options";
import type { PeerResult, ToolRun } from "./peers";

/** Whether a tool's apply left the provider's end state on every host. */
export interface SameState {
  tool: string;
  delayMs: number;
  same: boolean;
}

/**
 * Controller CPU per resource operation of main before the CPU work (BASELINE_COMMIT, the
 * dynamic-provider plugin, pooled runs of the bench of that day, cgroup v2 usage_usec), recorded
 * on 2026-11-30 on a quicker machine than later rounds', by a bench that has changed since. The
 * halving target compares with the baseline mode's runs, the same code run beside today's; this
 * figure is the fallback without them.
 */
export const BASELINE_CPU_MS_PER_OP = 9.6;

/**
 * main before the work on controller CPU: the commit that added the bench's CPU accounting and
 * recorded BASELINE_CPU_MS_PER_OP. Its provider runs every command on an exec channel of the
 * pooled connection (no remote shells), each observation a command of its own. The bench's
 * baseline mode builds it (bench/baseline.ts) and runs it beside today's code.
 */
export const BASELINE_COMMIT = "45cff3f6db920a286a25d6c417f9a968bd0bdc03";

/** Returns a commit's short form, as the bench prints it and names the baseline's build. */
export const shortCommit = (commit: string): string => commit.slice(0, 12);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ") + " |";
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * Returns an operation's remote commands: the hosts' count of requests to their remote shells plus
 * plain sessions when they traced them, else sessions.
 */
export function roundTrips(o: OpRecord, traced: boolean): number {
  return traced ? o.requests : o.sessions;
}

/** Returns ms as seconds with two decimals. */
export const s = (ms: number): string => (ms / 1000).toFixed(2);

/** Returns the controller CPU ms per resource operation over every run of a mode, if measured. */
export function controllerCpuPerOp(runs: RunResult[], mode: Mode = "pooled"): number | undefined {
  const phases = runs.filter((r) => r.mode === mode).flatMap((r) => r.phases);
  if (phases.length === 0 || phases.some((p) => p.controllerCpuUs === undefined)) return undefined;
  const us = phases.reduce((a, p) => a + (p.controllerCpuUs ?? 0), 0);
  return (
    us /
    1000 /
    Math.max(
      1,
      phases.reduce((a, p) => a + p.ops, 0),
    )
  );
}

/**
 * Returns, per run of the bench (trial), the controller CPU ms per operation of the pooled runs
 * and of the baseline's runs at the same delays and schedules, and baseline over pooled; undefined
 * when a trial lacks either (or its CPU figures).
 */
export function baselineRatios(
  runs: readonly RunResult[],
  trials: readonly number[],
): { pooled: number[]; baseline: number[]; ratios: number[] } | undefined {
  const pooled: number[] = [];
  const baseline: number[] = [];
  for (const t of trials) {
    const mine = runs.filter((r) => trialOf(r) === t);
    const at = (r: RunResult): string => `${r.delayMs} ${r.schedule}`;
    const both = new Set(mine.filter((r) => r.mode === "baseline").map(at));
    const paired = mine.filter((r) => both.has(at(r)));
    const p = controllerCpuPerOp(paired, "pooled");
    const b = controllerCpuPerOp(paired, "baseline");
    if (p === undefined || b === undefined || p <= 0) return undefined;
    pooled.push(p);
    baseline.push(b);
  }
  if (pooled.length === 0) return undefined;
  return { pooled, baseline, ratios: baseline.map((b, i) => b / (pooled[i] ?? 1)) };
}

/** Returns the median of the values (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? 0) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

/** Returns "MEDIAN (RUN1, RUN2, ...)", each with `digits` decimals: a table cell over runs. */
export function medianAndEach(values: readonly number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${values.map((v) => v.toFixed(digits)).join(", ")})`;
}

// The median of each defined value (undefined when any run lacks it).
function medianOf<T>(xs: readonly T[], get: (x: T) => number | undefined): number | undefined {
  const v = xs.map(get);
  return v.every((x): x is number => x !== undefined) ? median(v) : undefined;
}

/** Returns the trial numbers in the runs (a run without one is trial 1). */
export function trialsOf(runs: readonly { trial?: number }[]): number[] {
  return [...new Set(runs.map(trialOf))].sort((a, b) => a - b);
}

// The run of the bench (--repeat) a result belongs to; a result without one is the only one.
const trialOf = (r: { trial?: number }): number => r.trial ?? 1;

// The items grouped by key, each group in the items' order, the groups in their first item's.
function groupsOf<T>(items: readonly T[], key: (x: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const x of items) {
    const g = groups.get(key(x));
    if (g) g.push(x);
    else groups.set(key(x), [x]);
  }
  return [...groups.values()];
}

/**
 * Returns one run per delay, schedule and mode: the only one, or (--repeat) each phase's figures
 * as their median over the runs, every run's operations, and the most connections any saw.
 */
export function medianRuns(runs: readonly RunResult[]): RunResult[] {
  return groupsOf(runs, (r) => `${r.delayMs} ${r.schedule} ${r.mode}`).map((g) => {
    const first = g[0] as RunResult;
    if (g.length === 1) return first;
    const phases = first.phases.flatMap((p0) => {
      const ps = g.flatMap((r) => r.phases.filter((p) => p.phase === p0.phase));
      if (ps.length !== g.length) return [];
      const controllerCpuUs = medianOf(ps, (p) => p.controllerCpuUs);
      const hostCpuUs = medianOf(ps, (p) => p.hostCpuUs);
      const machineCpuUs = medianOf(ps, (p) => p.machineCpuUs);
      const bytesToHosts = medianOf(ps, (p) => p.bytesToHosts);
      const bytesFromHosts = medianOf(ps, (p) => p.bytesFromHosts);
      return [
        {
          phase: p0.phase,
          wallMs: median(ps.map((p) => p.wallMs)),
          connections: median(ps.map((p) => p.connections)),
          sessions: median(ps.map((p) => p.sessions)),
          ops: p0.ops,
          ...(controllerCpuUs !== undefined ? { controllerCpuUs } : {}),
          ...(hostCpuUs !== undefined ? { hostCpuUs } : {}),
          ...(machineCpuUs !== undefined ? { machineCpuUs } : {}),
          ...(bytesToHosts !== undefined ? { bytesToHosts } : {}),
          ...(bytesFromHosts !== undefined ? { bytesFromHosts } : {}),
        },
      ];
    });
    const { trial: _t, memory: _m, ...rest } = first;
    const controllerStartCpuUs = medianOf(g, (r) => r.controllerStartCpuUs);
    const memory = medianMemory(g.map((r) => r.memory));
    return {
      ...rest,
      phases,
      connectionsPerHost: first.connectionsPerHost.map((_, i) =>
        Math.max(...g.map((r) => r.connectionsPerHost[i] ?? 0)),
      ),
      ops: g.flatMap((r) => r.ops),
      startMs: median(g.map((r) => r.startMs)),
      ...(controllerStartCpuUs !== undefined ? { controllerStartCpuUs } : {}),
      refreshChanges: [...new Set(g.flatMap((r) => r.refreshChanges))],
      ...(memory ? { memory } : {}),
    };
  });
}

// Each memory figure's median over the runs (per host for what the hosts held); none unless
// every run has them.
function medianMemory(ms: readonly (RunMemory | undefined)[]): RunMemory | undefined {
  if (!ms.every((m): m is RunMemory => m !== undefined) || ms.length === 0) return undefined;
  const first = ms[0] as RunMemory;
  return {
    pluginStartKb: median(ms.map((m) => m.pluginStartKb)),
    pluginPeakKb: median(ms.map((m) => m.pluginPeakKb)),
    hostsHeld: first.hostsHeld.map((_, i) => ({
      processes: median(ms.map((m) => m.hostsHeld[i]?.processes ?? 0)),
      pssKb: median(ms.map((m) => m.hostsHeld[i]?.pssKb ?? 0)),
      privateKb: median(ms.map((m) => m.hostsHeld[i]?.privateKb ?? 0)),
    })),
  };
}

/**
 * Returns the memory table: the plugin's resident set once configured and at its peak, and what
 * the hosts' sessions held between operations (after the create, the shells idle), summed over
 * the hosts; empty when no run measured it.
 */
export function memoryLines(
  runs: readonly RunResult[],
  alone: readonly PluginAloneResult[] = [],
): string[] {
  const rows = runs.flatMap((r) => {
    const m = r.memory;
    if (!m) return [];
    const n = Math.max(1, m.hostsHeld.length);
    const sum = (k: "processes" | "pssKb" | "privateKb"): number =>
      m.hostsHeld.reduce((a, h) => a + h[k], 0);
    const pss = sum("pssKb");
    const own = sum("privateKb");
    return [
      [
        `${r.delayMs} ms`,
        r.schedule,
        r.mode,
        mb(m.pluginStartKb),
        mb(m.pluginPeakKb),
        String(sum("processes")),
        `${mb(pss)} / ${mb(own)}`,
        `${mb(pss / n)} / ${mb(own / n)}`,
      ],
    ];
  });
  if (rows.length === 0) return [];
  const aloneKb = alone.flatMap((a) => (a.peakKb !== undefined ? [a.peakKb] : []));
  return [
    "memory: the plugin's resident set (MB) once configured and its peak over the run; what the " +
      "hosts' sessions held right after the create, between operations (the sessions under each " +
      "host's listening sshd: the connection's sshd, the remote shells with their perls; not " +
      "dnsmasq), all hosts and per host: processes, proportional set size (PSS, shared pages " +
      "split among the processes that map them, so it shrinks as more run) and private MB (what " +
      "their exit frees). Sessions close after 10 s idle.",
    table(
      [
        "delay",
        "schedule",
        "mode",
        "plugin MB configured",
        "plugin MB peak",
        "host processes held",
        "host MB held (PSS / private)",
        "per host (PSS / private)",
      ],
      rows,
    ),
    ...(aloneKb.length > 0
      ? [
          `the plugin alone (the same calls, a provider that does nothing): peak ` +
            `${mb(median(aloneKb))} MB (median of ${aloneKb.length} processes)`,
        ]
      : []),
    "",
  ];
}

function medianToolRun(xs: readonly ToolRun[]): ToolRun {
  const controllerCpuUs = medianOf(xs, (x) => x.controllerCpuUs);
  const hostCpuUs = medianOf(xs, (x) => x.hostCpuUs);
  const machineCpuUs = medianOf(xs, (x) => x.machineCpuUs);
  const bytesToHosts = medianOf(xs, (x) => x.bytesToHosts);
  const changed = xs.map((x) => x.changed);
  return {
    wallMs: median(xs.map((x) => x.wallMs)),
    connections: median(xs.map((x) => x.connections)),
    sessions: median(xs.map((x) => x.sessions)),
    ...(controllerCpuUs !== undefined ? { controllerCpuUs } : {}),
    ...(hostCpuUs !== undefined ? { hostCpuUs } : {}),
    ...(machineCpuUs !== undefined ? { machineCpuUs } : {}),
    ...(bytesToHosts !== undefined ? { bytesToHosts } : {}),
    // the most any run changed: one that was not idempotent is never hidden by a median
    ...(changed.every((c): c is number => c !== undefined)
      ? { changed: Math.max(...changed) }
      : {}),
  };
}

/** Returns one result per tool and delay: the only one, or each figure's median over the runs. */
export function medianPeers(peers: readonly PeerResult[]): PeerResult[] {
  return groupsOf(peers, (p) => `${p.peer} ${p.delayMs}`).map((g) => {
    const first = g[0] as PeerResult;
    if (g.length === 1) return first;
    const noops = g.flatMap((p) => (p.noop ? [p.noop] : []));
    return {
      peer: first.peer,
      delayMs: first.delayMs,
      apply: medianToolRun(g.map((p) => p.apply)),
      ...(noops.length === g.length ? { noop: medianToolRun(noops) } : {}),
    };
  });
}

const x1 = (v: number): string => `${v.toFixed(1)}x`;
const ms1 = (v: number): string => `${v.toFixed(1)} ms`;

// "(6.0x)" for one run; "(median 6.0x; runs 5.8x, 6.0x, 6.3x)" for several, each run's in order.
function figures(values: readonly number[], fmt: (v: number) => string): string {
  if (values.length === 1) return fmt(values[0] ?? 0);
  return `median ${fmt(median(values))}; runs ${values.map(fmt).join(", ")}`;
}

/**
 * Returns the lines that split each run's controller CPU per operation (`perOp`, one per trial)
 * into the dynamic-provider plugin's own work, from the plugin-alone runs of the same trial, and
 * the provider's; none without plugin-alone runs for every trial.
 */
export function aloneLines(
  perOp: readonly number[],
  trials: readonly number[],
  alone: readonly PluginAloneResult[],
): string[] {
  const plugin = trials.map((t) => {
    const mine = alone.filter((a) => trialOf(a) === t);
    const ops = mine.reduce((a, x) => a + x.ops, 0);
    return ops > 0 ? mine.reduce((a, x) => a + x.controllerCpuUs, 0) / 1000 / ops : undefined;
  });
  if (!plugin.every((p): p is number => p !== undefined)) return [];
  const own = perOp.map((c, i) => c - (plugin[i] ?? 0));
  return [
    `  of which the dynamic-provider plugin alone (the same calls and payloads, a provider that ` +
      `does nothing): ${figures(plugin, ms1)}`,
    `  and the provider's own work: ${figures(own, ms1)}`,
  ];
}

const cpuS = (us: number | undefined): string => (us === undefined ? "-" : (us / 1e6).toFixed(2));
const kbOf = (bytes: number | undefined): string =>
  bytes === undefined ? "-" : (bytes / 1000).toFixed(0);

/** Returns the report text: totals per run and phase, ratios, round trips per op, verdicts. */
export function renderReport(
  opts: BenchOptions,
  allRuns: RunResult[],
  allPeers: PeerResult[] = [],
  sameState: SameState[] = [],
  alone: PluginAloneResult[] = [],
): string {
  const out: string[] = [];
  const shape = fleetShape(opts.resources);
  const trials = trialsOf(allRuns);
  const runs = medianRuns(allRuns);
  const peers = medianPeers(allPeers);
  out.push(
    `fleet: ${opts.hosts} hosts x ${opts.resources} resources ` +
      `(${shape.bridges} bridges, ${shape.taps} taps, ${shape.dnsmasq ? 1 : 0} dnsmasq, ` +
      `${shape.nat ? 1 : 0} nat per host), through the dynamic-provider plugin.`,
    "schedule serial: hosts at once, each host's resources one after another; parallel: the " +
      "fleet as one deployment, as Pulumi runs it by default (each step once its dependencies " +
      "are done, deletes in waves across the hosts).",
    "delay: added to each direction of the controller-to-host link (round trip = 2 x delay)" +
      (opts.bandwidthMbit !== undefined
        ? `; each direction of a delayed link carries at most ${opts.bandwidthMbit} Mbit/s.`
        : "."),
    "connections and sessions are counted by the hosts' sshd; sessions/op = remote commands per " +
      "resource operation; KB to / from hosts = what the relays that add the delay passed on each " +
      "way (none at 0 ms).",
    ...(opts.modes.includes("compressed")
      ? ["mode compressed: pooled, every connection with compression: true (zlib)."]
      : []),
    ...(opts.modes.includes("baseline")
      ? [
          `mode baseline: the provider of commit ${shortCommit(BASELINE_COMMIT)} (before the ` +
            "work on controller CPU), pooled, built from this repository's history.",
        ]
      : []),
    ...(trials.length > 1
      ? [
          `${trials.length} runs of each provider mode and of the floor at each delay, interleaved ` +
            "(Ansible once): each figure in the tables is its median over them; a target is met " +
            "when the median of the runs' own ratios is, each run's ratio shown after it.",
        ]
      : []),
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
      type Summed = "controllerCpuUs" | "hostCpuUs" | "bytesToHosts" | "bytesFromHosts";
      // the phases' sum, undefined unless every phase has the figure
      const sum = (k: Summed): number | undefined =>
        ps.every((p) => p[k] !== undefined) ? ps.reduce((a, p) => a + (p[k] ?? 0), 0) : undefined;
      const controllerUs = sum("controllerCpuUs");
      const ctl =
        controllerUs !== undefined ? (controllerUs / 1000 / Math.max(1, ops)).toFixed(1) : "-";
      const toHosts = sum("bytesToHosts");
      rows.push([
        `${r.delayMs} ms`,
        r.schedule,
        r.mode,
        phase,
        s(wallOf(r, phase)),
        String(conns),
        String(sess),
        (sess / Math.max(1, ops)).toFixed(2),
        cpuS(controllerUs),
        ctl,
        cpuS(sum("hostCpuUs")),
        toHosts !== undefined ? `${kbOf(toHosts)} / ${kbOf(sum("bytesFromHosts"))}` : "-",
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
        "controller CPU s",
        "controller CPU ms/op",
        "host CPU s",
        "KB to / from hosts",
      ],
      rows,
    ),
    "",
  );

  const starts = runs.flatMap((r) =>
    r.controllerStartCpuUs !== undefined ? [r.controllerStartCpuUs] : [],
  );
  if (starts.length > 0) {
    out.push(
      `controller CPU of the plugin's start-up (spawn, load, configure; not in the table), mean ` +
        `over ${starts.length} processes: ${(starts.reduce((a, b) => a + b, 0) / starts.length / 1e6).toFixed(2)} s`,
    );
  }
  out.push(...memoryLines(runs, alone));
  // per run of the bench (--repeat), each over its own pooled runs
  const cpuPerOpRuns = trials.map((t) =>
    controllerCpuPerOp(allRuns.filter((r) => trialOf(r) === t)),
  );
  // none without runs: a bench that failed before its first run has no figure, and no verdict
  const cpuPerOp =
    cpuPerOpRuns.length > 0 && cpuPerOpRuns.every((c): c is number => c !== undefined)
      ? cpuPerOpRuns
      : undefined;
  const halving = baselineRatios(allRuns, trials);
  if (cpuPerOp !== undefined) {
    out.push(
      `controller CPU per resource operation (pooled runs, create + refresh + destroy): ` +
        figures(cpuPerOp, ms1),
    );
    out.push(...aloneLines(cpuPerOp, trials, alone));
    if (halving !== undefined) {
      out.push(
        `  the baseline code (commit ${shortCommit(BASELINE_COMMIT)}, before the CPU work) in ` +
          `the same runs: ${figures(halving.baseline, ms1)}`,
      );
    }
    out.push("");
  }

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
  // at the largest delay, where an operation's time is mostly its round trips (the docs quote it)
  const perOp = serialPooled.reduce<RunResult | undefined>(
    (a, r) => (a === undefined || r.delayMs > a.delayMs ? r : a),
    undefined,
  );
  const traced = runs.some((r) => r.ops.some((o) => o.requests > 0));
  if (perOp) {
    const opKey = (o: OpRecord): string => `${o.op} ${o.type}`;
    // the host's CPU per operation, where the run had CPU accounting
    const hostCpu = perOp.ops.every((o) => o.hostCpuUs !== undefined);
    const opRows = groupsOf(perOp.ops, opKey).map((list) => {
      const sess = list.map((o) => roundTrips(o, traced));
      return [
        opKey(list[0] as OpRecord),
        String(list.length),
        String(Math.min(...sess)),
        (sess.reduce((a, b) => a + b, 0) / list.length).toFixed(2),
        String(Math.max(...sess)),
        median(list.map((o) => o.ms)).toFixed(0),
        ...(hostCpu ? [(median(list.map((o) => o.hostCpuUs ?? 0)) / 1000).toFixed(1)] : []),
      ];
    });
    out.push(
      `round trips per operation (${traced ? "remote-shell requests in the hosts' trace plus plain sessions" : "ssh sessions in the hosts' sshd log"}), ` +
        `serial pooled at ${perOp.delayMs} ms (the first operation on a host may add one)` +
        `${hostCpu ? "; the host's CPU per operation (its sshd and everything under it)" : ""}:`,
      table(
        [
          "operation",
          "count",
          "min",
          "mean",
          "max",
          "median ms",
          ...(hostCpu ? ["median host CPU ms"] : []),
        ],
        opRows,
      ),
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

  const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
  const targets: string[] = [];
  if (peers.length > 0 || sameState.length > 0) {
    out.push(
      ...renderTools(opts, runs, peers, sameState, targets, verdict, { allRuns, allPeers, trials }),
      "",
    );
  }

  // Targets.
  const pooledRuns = runs.filter((r) => r.mode === "pooled");
  if (pooledRuns.length > 0) {
    const maxConns = Math.max(...pooledRuns.flatMap((r) => r.connectionsPerHost));
    out.push(
      `target: one SSH connection per host per process: ${verdict(maxConns <= 1)} ` +
        `(most connections one host saw from one pooled plugin process: ${maxConns})`,
    );
  }
  if (serialPooled.length > 0) {
    const ops = serialPooled.flatMap((r) => r.ops);
    const traced = ops.some((o) => o.requests > 0);
    for (const [what, want, pick] of [
      ["create/update/delete", 2, (o: OpRecord) => o.op !== "read"],
      ["read", 1, (o: OpRecord) => o.op === "read"],
    ] as const) {
      // The first operation on each host may add one (the session's own set-up).
      const list = ops.filter(pick);
      if (list.length === 0) continue;
      const rts = list.map((o) => roundTrips(o, traced)).sort((a, b) => a - b);
      const median = rts[Math.floor(rts.length / 2)] ?? 0;
      const mean = rts.reduce((a, b) => a + b, 0) / rts.length;
      out.push(
        `target: ${want} round trip${want > 1 ? "s" : ""} per ${what}, counted on the hosts ` +
          `(${traced ? "trace requests + plain sessions" : "sshd sessions"}): ${verdict(median <= want)} ` +
          `(median ${median}, mean ${mean.toFixed(2)}, max ${rts[rts.length - 1] ?? 0})`,
      );
    }
  }
  for (const { delay, schedule } of pairs.filter((x) => x.delay >= 20)) {
    // each run's ratio, from the runs of the same round (trial)
    const ratios = trials.flatMap((t) => {
      const find = (m: Mode): RunResult | undefined =>
        allRuns.find(
          (r) => trialOf(r) === t && r.delayMs === delay && r.schedule === schedule && r.mode === m,
        );
      const pooled = find("pooled");
      const fresh = find("per-command");
      return pooled && fresh ? [wallOf(fresh, "total") / wallOf(pooled, "total")] : [];
    });
    if (ratios.length === 0) continue;
    out.push(
      `target: at least 5x faster than connection-per-command at ${delay} ms (${schedule}): ` +
        `${verdict(median(ratios) >= 5)} (${figures(ratios, x1)} over create + refresh + destroy)`,
    );
  }
  if (halving !== undefined) {
    out.push(
      `target: controller CPU per resource operation halved against the baseline code in the ` +
        `same runs: ${verdict(median(halving.ratios) >= 2)} (${figures(halving.ratios, x1)}; ` +
        `${ms1(median(halving.pooled))} against ${ms1(median(halving.baseline))})`,
    );
  } else if (cpuPerOp !== undefined) {
    out.push(
      `target: controller CPU per resource operation halved (<= ${(BASELINE_CPU_MS_PER_OP / 2).toFixed(1)} ms, ` +
        `was ${BASELINE_CPU_MS_PER_OP} ms on the machine of 2026-11-30; --modes baseline measures ` +
        `it beside today's code): ${verdict(median(cpuPerOp) <= BASELINE_CPU_MS_PER_OP / 2)} ` +
        `(${figures(cpuPerOp, ms1)})`,
    );
  }
  if (opts.bandwidthMbit !== undefined) {
    out.push(
      `note: the delayed links carried at most ${opts.bandwidthMbit} Mbit/s each way; the targets ` +
        "are set for links without a limit (their verdicts need a run without --bandwidth)",
    );
  }
  out.push(...targets);
  return out.join("\n");
}

/** A tool's apply and checking no-op at one delay, for the comparison table. */
interface ToolRow {
  tool: string;
  delayMs: number;
  apply: ToolRun;
  noop: ToolRun | undefined;
  /** Start-up not included in apply (the plugin's spawn and configure). */
  startMs?: number;
}

/**
 * What the machine's CPUs did during a tool's apply: how busy they were, and whose that was (the
 * lab hosts, the tool's own process tree, and the rest: the bench's process with its engine
 * stand-in and relays, and the kernel's work for them). Undefined without the figures.
 */
export function machineLine(row: ToolRow, cpus: number): string | undefined {
  const { wallMs, machineCpuUs, hostCpuUs, controllerCpuUs } = row.apply;
  if (machineCpuUs === undefined || hostCpuUs === undefined || controllerCpuUs === undefined) {
    return undefined;
  }
  const busy = (100 * machineCpuUs) / (wallMs * 1000 * cpus);
  const rest = machineCpuUs - hostCpuUs - controllerCpuUs;
  return (
    `${row.tool} apply kept the machine's ${cpus} CPUs ${busy.toFixed(0)}% busy ` +
    `(${cpuS(machineCpuUs)} CPU-s in ${s(wallMs)} s: hosts ${cpuS(hostCpuUs)}, its controller ` +
    `${cpuS(controllerCpuUs)}, the rest ${cpuS(Math.max(0, rest))})`
  );
}

function providerRows(runs: RunResult[]): ToolRow[] {
  return runs.flatMap((r) => {
    const phase = (p: Phase): ToolRun | undefined => {
      const x = r.phases.find((y) => y.phase === p);
      return x
        ? {
            wallMs: x.wallMs,
            ...(x.controllerCpuUs !== undefined ? { controllerCpuUs: x.controllerCpuUs } : {}),
            ...(x.hostCpuUs !== undefined ? { hostCpuUs: x.hostCpuUs } : {}),
            ...(x.machineCpuUs !== undefined ? { machineCpuUs: x.machineCpuUs } : {}),
            ...(x.bytesToHosts !== undefined ? { bytesToHosts: x.bytesToHosts } : {}),
            connections: x.connections,
            sessions: x.sessions,
          }
        : undefined;
    };
    const apply = phase("create");
    return apply
      ? [
          {
            tool: `provider ${r.mode} ${r.schedule}`,
            delayMs: r.delayMs,
            apply,
            noop: phase("refresh"),
            startMs: r.startMs,
          },
        ]
      : [];
  });
}

// The comparison with the other tools: a table per delay, the ratios and their targets.
function renderTools(
  opts: BenchOptions,
  runs: RunResult[],
  peers: PeerResult[],
  sameState: SameState[],
  targets: string[],
  verdict: (ok: boolean) => string,
  each: { allRuns: RunResult[]; allPeers: PeerResult[]; trials: number[] },
): string[] {
  const out: string[] = [
    "the same job by each tool (apply = the provider's create phase, Ansible's first run, the floor's " +
      "script; no-op = the provider's refresh, Ansible's second run). The provider's plugin start-up " +
      "is not in its apply (column start s). CPU in seconds from cgroup v2; host CPU is every lab " +
      "host's sshd and what it ran; KB to hosts is what the relays that add the delay passed on " +
      "toward the hosts (none at 0 ms).",
  ];
  const rows: ToolRow[] = [
    ...providerRows(runs),
    ...peers.map((p) => ({ tool: p.peer, delayMs: p.delayMs, apply: p.apply, noop: p.noop })),
  ];
  const sameOf = (tool: string, delay: number): string => {
    const xs = sameState.filter((y) => y.tool === tool && y.delayMs === delay);
    return xs.length === 0 ? "-" : xs.every((x) => x.same) ? "yes" : "NO";
  };
  const table2: string[][] = rows.map((r) => [
    `${r.delayMs} ms`,
    r.tool,
    r.startMs !== undefined ? s(r.startMs) : "-",
    s(r.apply.wallMs),
    r.noop ? s(r.noop.wallMs) : "-",
    `${cpuS(r.apply.controllerCpuUs)} / ${cpuS(r.noop?.controllerCpuUs)}`,
    `${cpuS(r.apply.hostCpuUs)} / ${cpuS(r.noop?.hostCpuUs)}`,
    `${r.apply.connections} / ${r.noop?.connections ?? "-"}`,
    `${r.apply.sessions} / ${r.noop?.sessions ?? "-"}`,
    `${kbOf(r.apply.bytesToHosts)} / ${kbOf(r.noop?.bytesToHosts)}`,
    r.noop?.changed !== undefined ? String(r.noop.changed) : "-",
    sameOf(r.tool, r.delayMs),
  ]);
  out.push(
    table(
      [
        "delay",
        "tool",
        "start s",
        "apply s",
        "no-op s",
        "controller CPU s apply / no-op",
        "host CPU s apply / no-op",
        "connections",
        "sessions",
        "KB to hosts apply / no-op",
        "no-op changed",
        "same state",
      ],
      table2,
    ),
  );
  // Ratios: the provider (pooled, parallel when run, as the engine schedules) against each tool.
  for (const delay of opts.delays) {
    const ours =
      rows.find((r) => r.delayMs === delay && r.tool === "provider pooled parallel") ??
      rows.find((r) => r.delayMs === delay && r.tool === "provider pooled serial");
    if (!ours) continue;
    for (const r of rows.filter((x) => x.delayMs === delay && x !== ours)) {
      const applyRatio = r.apply.wallMs / ours.apply.wallMs;
      const noopRatio = r.noop && ours.noop ? r.noop.wallMs / ours.noop.wallMs : undefined;
      out.push(
        `  ${delay} ms: ${r.tool} / ${ours.tool}: apply ${applyRatio.toFixed(2)}x` +
          (noopRatio !== undefined ? `, no-op ${noopRatio.toFixed(2)}x` : "") +
          (r.apply.controllerCpuUs && ours.apply.controllerCpuUs
            ? `, controller CPU on apply ${(r.apply.controllerCpuUs / ours.apply.controllerCpuUs).toFixed(2)}x`
            : ""),
      );
      if (r.tool === "ansible-tuned") {
        targets.push(
          `target: at least 4x faster than Ansible tuned on the first apply at ${delay} ms: ` +
            `${verdict(applyRatio >= 4)} (${applyRatio.toFixed(1)}x)`,
        );
        if (noopRatio !== undefined) {
          targets.push(
            `target: at least 4x faster than Ansible tuned on the checking no-op at ${delay} ms: ` +
              `${verdict(noopRatio >= 4)} (${noopRatio.toFixed(1)}x)`,
          );
        }
      }
      if (r.tool === "floor" && delay >= 20) {
        // each run's ratio: the provider's apply over the floor's of the same round (trial)
        const overFloor = each.trials.flatMap((t) => {
          const mine = providerRows(
            each.allRuns.filter((x) => trialOf(x) === t && x.delayMs === delay),
          ).find((x) => x.tool === ours.tool);
          const floor = each.allPeers.find(
            (x) => trialOf(x) === t && x.delayMs === delay && x.peer === "floor",
          );
          return mine && floor ? [mine.apply.wallMs / floor.apply.wallMs] : [];
        });
        if (overFloor.length > 0) {
          targets.push(
            `target: first apply within 2x of the floor at ${delay} ms (without the plugin's ` +
              `${s(ours.startMs ?? 0)} s start-up): ${verdict(median(overFloor) <= 2)} ` +
              `(${figures(overFloor, x1)})`,
          );
        }
        // how much of the machine each apply had: a create bound by the CPUs shows near 100%
        const busy = [ours, r].map((x) => machineLine(x, os.availableParallelism()));
        if (busy.every((x) => x !== undefined)) out.push(`  ${delay} ms: ${busy.join("; ")}`);
      }
    }
  }
  const notSame = sameState.filter((x) => !x.same);
  targets.push(
    `check: every tool leaves the provider's host state: ${notSame.length === 0 ? "yes" : "NO"}` +
      (notSame.length > 0
        ? ` (${notSame.map((x) => `${x.tool} at ${x.delayMs} ms`).join(", ")})`
        : ""),
  );
  for (const p of peers.filter((x) => x.noop)) {
    targets.push(
      `check: ${p.peer} second run at ${p.delayMs} ms reports changed=${p.noop?.changed ?? "?"}: ` +
        (p.noop?.changed === 0 ? "idempotent" : "NOT idempotent"),
    );
  }
  return out;
}
