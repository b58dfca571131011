// The bench's driver: one run starts a plugin process (pooled or one connection per command),
// converges every host's fleet, refreshes and destroys it, and counts what each host's sshd saw.
import { execFileSync } from "node:child_process";
import { realpathSync } from "node:fs";
import { readFile } from "node:fs/promises";
import Module from "node:module";
import * as path from "node:path";
import type { Lab, LabHost } from "../lab";
import {
  DynamicProviderPlugin,
  Engine,
  type ResourceSpec,
  type ResourceState,
  type StepRecord,
} from "../lab/engine/engine";
import { FakeEngine } from "../lab/engine/fake-engine";
import { statFields } from "../lab/exec";
import { REPO_ROOT } from "../lab/harness";
import { fleetShape, hostSpecs, type FleetShape, type SpecConnection } from "./fleet-specs";
import { prepareBaseline } from "./baseline";
import type { BenchOptions, Mode, Schedule } from "./options";
import { machineBusyUs, type CpuAccounting, type CpuGroup } from "./cgroup";
import { heldBy, residentOf, sessionsUnder, type Held } from "./memory";
import { relaysBytes, type Relay } from "./relay";
import { SshdLogCounter, traceFileOf } from "./sshd-log";

export type Op = "create" | "read" | "update" | "delete";

export interface OpRecord {
  phase: Phase;
  type: string;
  op: Op;
  sessions: number;
  connections: number;
  /** Requests the host's trace counted (0 until the long-lived remote shell writes it). */
  requests: number;
  ms: number;
  /**
   * CPU time of the host's sshd and everything under it during the operation, in microseconds
   * (with CPU accounting). The host's own background (the lock watcher's `sleep` once a second,
   * a running dnsmasq) is in it too: a few hundredths of a millisecond per operation.
   */
  hostCpuUs?: number;
}

export type Phase = "create" | "refresh" | "destroy";
export const PHASES: readonly Phase[] = ["create", "refresh", "destroy"];

function shortType(urn: string): string {
  return urn.slice(urn.lastIndexOf(":") + 1).split("::")[0] ?? urn;
}

function typeOfUrn(urn: string): string {
  // urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:Bridge::name
  const parts = urn.split("::");
  return shortType(parts[2] ?? urn);
}

// The plugin as one host's engine sees it: every host-touching call is counted on that host, and
// timed on the host's CPU when its cgroup is given.
function countingPlugin(
  plugin: DynamicProviderPlugin,
  counter: SshdLogCounter,
  phase: () => Phase,
  records: OpRecord[],
  hostGroup?: CpuGroup,
): DynamicProviderPlugin {
  const wrap = <A extends unknown[], R>(op: Op, urnAt: number, f: (...a: A) => Promise<R>) => {
    return async (...args: A): Promise<R> => {
      const before = counter.update();
      const cpuBefore = hostGroup?.usageUsecSync();
      const t0 = performance.now();
      const result = await f(...args);
      const ms = performance.now() - t0;
      const cpuAfter = hostGroup?.usageUsecSync();
      const after = counter.update();
      records.push({
        phase: phase(),
        type: typeOfUrn(String(args[urnAt])),
        op,
        sessions: after.sessions - before.sessions,
        requests: after.requests - before.requests,
        connections: after.connections - before.connections,
        ms,
        ...(cpuBefore !== undefined && cpuAfter !== undefined
          ? { hostCpuUs: cpuAfter - cpuBefore }
          : {}),
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

export interface PhaseResult {
  phase: Phase;
  wallMs: number;
  connections: number;
  sessions: number;
  ops: number;
  /** CPU time of the plugin process (cgroup v2), microseconds; undefined without accounting. */
  controllerCpuUs?: number;
  /** CPU time of every lab host's sshd and what it ran (cgroup v2), microseconds. */
  hostCpuUs?: number;
  /** Busy time of all the machine's CPUs (/proc/stat), microseconds: the bench's process too. */
  machineCpuUs?: number;
  /** Bytes the relays passed on toward the hosts and back; undefined without relays (0 ms). */
  bytesToHosts?: number;
  bytesFromHosts?: number;
}

/** The cgroups a run reads: a new one per plugin process, one per lab host (sshd). */
export interface RunCpu {
  acct: CpuAccounting;
  /** One group per lab host, in the order of `lab.hosts`. */
  hosts: CpuGroup[];
}

let runSerial = 0;

/** utime + stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks of 10 ms). */
export async function procCpuUs(pid: number): Promise<number> {
  const fields = statFields(await readFile(`/proc/${pid}/stat`, "utf8"));
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function sumUsage(groups: CpuGroup[]): Promise<number> {
  let total = 0;
  for (const g of groups) total += await g.usageUsec();
  return total;
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
  /** Wall time of the plugin's start-up (spawn to configured), not in any phase. */
  startMs: number;
  /** CPU time of the plugin's start-up (spawn to first call answered), microseconds. */
  controllerStartCpuUs?: number;
  /** Resources a no-op refresh reported as changed, with the output keys that differed. */
  refreshChanges: string[];
  /** Which of the bench's interleaved runs (--repeat) this is, from 1; absent: the only one. */
  trial?: number;
  /** Memory (bench/memory.ts); absent without CPU accounting, whose groups hold the hosts. */
  memory?: RunMemory;
}

/** What the plugin and the hosts' sessions held in memory. */
export interface RunMemory {
  /** The plugin's resident set once configured, before any operation, kB. */
  pluginStartKb: number;
  /** Its peak resident set over the run (VmHWM before it stops), kB. */
  pluginPeakKb: number;
  /**
   * Per host (in the lab's order), what its sessions held right after the create phase, between
   * operations: the processes of the sessions under its listening sshd (the connection's sshd, the
   * remote shells and their perls), not the daemons the resources started.
   */
  hostsHeld: Held[];
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

/**
 * The resources of one deployment (one `pulumi up` of a stack) through the lab's engine stand-in:
 * the parallel schedule as the engine runs them by default (each step once what it depends on is
 * done, deletes in waves), the serial one a step at a time (`--parallel 1`).
 */
export class Deployment {
  private readonly engine: Engine;

  constructor(
    plugin: DynamicProviderPlugin,
    private readonly specs: ResourceSpec[],
  ) {
    this.engine = new Engine(plugin);
  }

  /** Returns the state of every resource the deployment holds (after a create: all). */
  states(): ResourceState[] {
    return [...this.engine.state.values()];
  }

  async run(phase: Phase, schedule: Schedule): Promise<StepRecord[]> {
    const atOnce = schedule === "parallel";
    if (phase === "create") return (await this.engine.up(this.specs, { atOnce })).steps;
    if (phase === "refresh") return (await this.engine.refresh({ oneAtATime: !atOnce })).steps;
    return (await this.engine.destroy({ atOnce })).steps;
  }
}

/**
 * Returns the deployments that run a fleet in a schedule, each with the hosts whose resources it
 * holds: in the parallel schedule a single one of every host's resources, as one stack holding the
 * fleet is deployed (its deletes' waves span the hosts); in the serial one a deployment per host,
 * the hosts at once.
 */
export function deploymentsOf<H extends { specs: ResourceSpec[] }>(
  hosts: H[],
  schedule: Schedule,
  pluginOf: (host: H) => DynamicProviderPlugin,
): { deployment: Deployment; hosts: H[] }[] {
  const first = hosts[0];
  if (schedule === "parallel" && first) {
    const all = hosts.flatMap((h) => h.specs);
    return [{ deployment: new Deployment(pluginOf(first), all), hosts }];
  }
  return hosts.map((h) => ({ deployment: new Deployment(pluginOf(h), h.specs), hosts: [h] }));
}

/** Returns the steps of the resources of `specs` among a deployment's steps. */
export function stepsOf(steps: StepRecord[], specs: ResourceSpec[]): StepRecord[] {
  const names = new Set(specs.map((s) => s.name));
  return steps.filter((st) => names.has(st.name));
}

/**
 * Returns the connection a host's specs carry: through its relay when the run has a delay, with
 * `compression: true` in the compressed mode.
 */
export function specConnection(
  h: LabHost,
  relays: Map<string, Relay>,
  mode: Mode = "pooled",
): SpecConnection {
  const relay = relays.get(h.name);
  const conn = {
    ...h.connection(),
    ...(relay ? { host: relay.host, port: relay.port } : {}),
  };
  return mode === "compressed" ? { ...conn, compression: true } : conn;
}

/**
 * Returns why a provider the plugin would load from `resolved` is not the one of the checkout at
 * `root` (undefined when it is). A second checkout (a git worktree) whose node_modules links to
 * the first's loads the first's provider through node_modules/pulumi-hypervisor, its own bench
 * code beside it: two builds "compared" that way are one build twice.
 */
export function foreignProvider(resolved: string, root: string): string | undefined {
  const rel = path.relative(realpathSync(root), realpathSync(resolved));
  if (rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel)) return undefined;
  return `the plugin would load the provider from ${realpathSync(resolved)}, not from this checkout (${root}): its node_modules/pulumi-hypervisor must link to it`;
}

/**
 * Returns where `require("pulumi-hypervisor/provider")` leads in a dynamic-provider plugin started
 * in `cwd`. The plugin compiles `__provider` with require-from-string, as a module without a file
 * whose search paths are the working directory's node_modules; `require.resolve` with `paths`
 * would answer for the bench's own package instead (a package resolves its own name first).
 */
export function pluginResolves(cwd: string): string {
  const M = Module as unknown as {
    _nodeModulePaths(from: string): string[];
    _resolveFilename(request: string, parent: Module, isMain: boolean): string;
  };
  const m = new Module("", undefined);
  m.filename = "";
  m.paths = M._nodeModulePaths(cwd);
  return M._resolveFilename("pulumi-hypervisor/provider", m, false);
}

// The plugin loads the provider as `pulumi-hypervisor/provider` through node_modules; a shared
// tree's `npm ci` removes that link, so it is checked before each plugin starts, and so is where
// it leads: the checkout at `root` (this one, or the baseline's build).
function ensureSelfLink(root: string): void {
  let resolved: string;
  try {
    resolved = pluginResolves(root);
  } catch {
    execFileSync(process.execPath, [path.join(root, "scripts", "link-self.js")]);
    resolved = pluginResolves(root);
  }
  const why = foreignProvider(resolved, root);
  if (why !== undefined) throw new Error(`bench: ${why}`);
}

/** Returns the result of one run: a mode and a schedule at a delay, on every host of the lab. */
export async function runOne(
  lab: Lab,
  opts: BenchOptions,
  mode: Mode,
  schedule: Schedule,
  delayMs: number,
  relays: Map<string, Relay>,
  log: (line: string) => void,
  cpu?: RunCpu,
  afterCreate?: (states: ResourceState[]) => Promise<void>,
): Promise<RunResult> {
  const shape = fleetShape(opts.resources);
  // the baseline: the provider of BASELINE_COMMIT (pooled), loaded from its own build
  const cwd = mode === "baseline" ? prepareBaseline(log) : REPO_ROOT;
  ensureSelfLink(cwd);
  const startT0 = performance.now();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PULUMI_HYPERVISOR_SSH_POOL: mode === "per-command" ? "off" : "on",
  };
  // The plugin exits on SIGTERM without writing a profile; the preload makes it exit normally.
  const nodeArgs =
    opts.cpuProf !== undefined
      ? [
          "--cpu-prof",
          `--cpu-prof-dir=${path.resolve(opts.cpuProf)}`,
          "--require",
          path.join(__dirname, "prof-preload.js"),
        ]
      : [];
  // An engine that takes the plugin's log calls, as the Pulumi engine does: without it each
  // warning's failed call builds a stack trace through source maps, CPU no real run spends.
  const fake = await FakeEngine.start();
  const plugin = await DynamicProviderPlugin.start({
    cwd,
    env,
    nodeArgs,
    engineAddress: fake.address,
  });
  const records: OpRecord[] = [];
  const refreshChanges: string[] = [];
  let phase: Phase = "create";
  // CPU the plugin spent starting (node, @pulumi/pulumi) before it joined its group.
  const spawnCpuUs = cpu ? await procCpuUs(plugin.pid) : 0;
  const pluginGroup = cpu ? await cpu.acct.group(`plugin-${++runSerial}`, [plugin.pid]) : undefined;
  try {
    await plugin.configure({});
    // The plugin's start-up before it joined the group is not counted; configure is.
    const startMs = performance.now() - startT0;
    const pluginStart = await residentOf(plugin.pid);
    let hostsHeld: Held[] | undefined;
    const controllerStartCpuUs = pluginGroup
      ? spawnCpuUs + (await pluginGroup.usageUsec())
      : undefined;
    const per = await Promise.all(
      lab.hosts.map(async (h, i) => {
        const connection = specConnection(h, relays, mode);
        const counter = new SshdLogCounter(h.sshdLogPath, traceFileOf(h.sshdPid));
        const start = counter.update();
        // Per-operation counts are exact only when a host runs one operation at a time; the
        // parallel schedule is measured per phase only, so its timing is not perturbed.
        const counting =
          schedule === "serial"
            ? countingPlugin(plugin, counter, () => phase, records, cpu?.hosts[i])
            : plugin;
        const specs = await hostSpecs(h.name, h.guestNet(0), opts.resources, connection);
        return { h, counter, start, specs, counting };
      }),
    );
    // In the parallel schedule the plugin is the same for every host: the uncounted one.
    const deployments = deploymentsOf(per, schedule, (x) => x.counting);
    const phases: PhaseResult[] = [];
    for (const p of PHASES) {
      phase = p;
      const before = per.map((x) => x.counter.update());
      const cpuBefore = pluginGroup ? await pluginGroup.usageUsec() : 0;
      const hostBefore = cpu ? await sumUsage(cpu.hosts) : 0;
      const bytesBefore = relaysBytes(relays.values());
      const machineBefore = machineBusyUs();
      const t0 = performance.now();
      await Promise.all(
        deployments.map(async (d) => {
          const all = await d.deployment.run(p, schedule);
          for (const x of d.hosts) {
            const steps = stepsOf(all, x.specs);
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
          }
        }),
      );
      const wallMs = performance.now() - t0;
      const machineCpuUs = machineBusyUs() - machineBefore;
      const controllerCpuUs = pluginGroup ? (await pluginGroup.usageUsec()) - cpuBefore : undefined;
      const hostCpuUs = cpu ? (await sumUsage(cpu.hosts)) - hostBefore : undefined;
      const bytesAfter = relaysBytes(relays.values());
      const after = per.map((x) => x.counter.update());
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
        ...(controllerCpuUs !== undefined ? { controllerCpuUs } : {}),
        ...(hostCpuUs !== undefined ? { hostCpuUs } : {}),
        machineCpuUs,
        ...(bytesBefore && bytesAfter
          ? {
              bytesToHosts: bytesAfter.toTarget - bytesBefore.toTarget,
              bytesFromHosts: bytesAfter.fromTarget - bytesBefore.fromTarget,
            }
          : {}),
      });
      log(
        `  ${schedule} ${mode} ${delayMs} ms ${p}: ${(wallMs / 1000).toFixed(2)} s, ` +
          `${connections} connections, ${sessions} sessions` +
          (controllerCpuUs !== undefined
            ? `, controller CPU ${(controllerCpuUs / 1e6).toFixed(2)} s`
            : "") +
          (hostCpuUs !== undefined ? `, host CPU ${(hostCpuUs / 1e6).toFixed(2)} s` : ""),
      );
      // Before the hosts are verified (through sessions of their own), the shells idle.
      if (p === "create" && cpu) {
        hostsHeld = await Promise.all(
          cpu.hosts.map(async (g, i) =>
            heldBy(await sessionsUnder(lab.hosts[i]?.sshdPid ?? 0, await g.pids())),
          ),
        );
      }
      await Promise.all(per.map((x) => verifyHost(x.h, shape, p !== "destroy")));
      if (p === "create" && afterCreate) {
        await afterCreate(deployments.flatMap((d) => d.deployment.states()));
      }
    }
    const pluginEnd = await residentOf(plugin.pid);
    const memory =
      pluginStart && pluginEnd && hostsHeld
        ? { pluginStartKb: pluginStart.rssKb, pluginPeakKb: pluginEnd.peakKb, hostsHeld }
        : undefined;
    const connectionsPerHost = per.map((x) => x.counter.update().connections - x.start.connections);
    for (const x of per) x.counter.close();
    return {
      mode,
      schedule,
      delayMs,
      hosts: opts.hosts,
      resources: opts.resources,
      phases,
      connectionsPerHost,
      ops: records,
      startMs,
      ...(controllerStartCpuUs !== undefined ? { controllerStartCpuUs } : {}),
      refreshChanges,
      ...(memory ? { memory } : {}),
    };
  } finally {
    await plugin.stop();
    fake.stop();
    await pluginGroup?.remove();
  }
}
