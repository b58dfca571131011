// The bench's report: totals per run and phase, ratios, round trips per operation and verdicts.
import { fleetShape } from "./fleet-specs";
import type { OpRecord, Phase, RunResult } from "./driver";
import { PHASES } from "./driver";
import type { BenchOptions, Mode, Schedule } from "./options";

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ") + " |";
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** Returns ms as seconds with two decimals. */
export const s = (ms: number): string => (ms / 1000).toFixed(2);

/** Returns the controller CPU ms per resource operation over every pooled run, if measured. */
export function controllerCpuPerOp(runs: RunResult[]): number | undefined {
  const phases = runs.filter((r) => r.mode === "pooled").flatMap((r) => r.phases);
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
      const cpuOf = (k: "controllerCpuUs" | "hostCpuUs"): string =>
        ps.every((p) => p[k] !== undefined)
          ? (ps.reduce((a, p) => a + (p[k] ?? 0), 0) / 1e6).toFixed(2)
          : "-";
      const ctl = ps.every((p) => p.controllerCpuUs !== undefined)
        ? (ps.reduce((a, p) => a + (p.controllerCpuUs ?? 0), 0) / 1000 / Math.max(1, ops)).toFixed(
            1,
          )
        : "-";
      rows.push([
        `${r.delayMs} ms`,
        r.schedule,
        r.mode,
        phase,
        s(wallOf(r, phase)),
        String(conns),
        String(sess),
        (sess / Math.max(1, ops)).toFixed(2),
        cpuOf("controllerCpuUs"),
        ctl,
        cpuOf("hostCpuUs"),
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
  const cpuPerOp = controllerCpuPerOp(runs);
  if (cpuPerOp !== undefined) {
    out.push(
      `controller CPU per resource operation (pooled runs, create + refresh + destroy): ` +
        `${cpuPerOp.toFixed(1)} ms`,
      "",
    );
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
