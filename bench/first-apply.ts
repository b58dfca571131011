// `npm run bench:first-apply [-- --runs 3 --passes 3 --reconnect --plugin dynamic --lab firstapply]`
// (root): what a plugin process pays the first time. Each run starts the plugin afresh on the
// bench's fleet (3 lab hosts x 20 resources, no added delay, the parallel schedule): the
// dynamic-provider plugin, one process for the fleet, or with `--plugin native` the native plugin
// as examples/fleet/native.ts uses it (a provider per host, so a process per host, the hosts at
// once), or with `--plugin native-one` the native plugin in one process for the fleet (the
// default provider, each resource bringing its connection, as with the dynamic plugin). It
// records the start-up (spawned to configured, from /proc: the process is not yet in the run's
// cgroup), then sends:
//   - with a native plugin, first, to processes of their own (started and stopped before the
//     run's, as `pulumi up` previews with plugins of its own), the fleet's preview as the engine
//     schedules it: each resource's Create with preview=true once those it depends on are done;
//     each host's plugin reads the host for the planned steps;
//   - one check per resource type to each process, before anything touches a host: the dynamic
//     plugin's first call into the provider loads its modules (and zod's, ssh2's) and runs its
//     check path cold (the native plugin loads them at start-up);
//   - the fleet's create, refresh and destroy, --passes times over, in the same processes.
// The first pass is what every `pulumi up` pays (each starts its own plugins): connections and
// shells opened, every code path run for the first time. The later passes send the same calls to
// code that has run, over the connections and shells the first one opened; with --reconnect each
// host's sshd ends the plugin's connections before each later pass, so it opens its connections
// and shells again, and only the code is warm. The plugins' CPU comes from a cgroup of the run's
// own (cgroup v2 `cpu.stat`), as in `npm run bench`; connections from the hosts' sshd logs; the
// plugins' memory (their resident sets summed, once configured and at their peaks) from /proc;
// sessions from the sshd logs, remote commands from them and the remote shells' request traces.
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { throwFirstFailure, urnOf, type ResourceSpec, type RunOptions } from "../lab/engine/engine";
import type { ProviderClient } from "../lab/engine/provider-client";
import { NativeEngine, secret, type NativeResourceSpec } from "../lab/engine/native-engine";
import { startEngine } from "../lab/harness";
import { startLab, type Lab } from "../lab/lab";
import { CpuAccounting } from "./cgroup";
import { PHASES, procCpuUs, type Phase } from "./driver";
import { hostSpecs } from "./fleet-specs";
import { residentOf } from "./memory";
import { int } from "./options";
import { medianAndEach } from "./report";
import { SshdLogCounter, startRequestTrace, traceFileOf } from "./sshd-log";

const RESOURCES = 20;
const TYPES = ["Bridge", "TapDevice", "DnsmasqInstance", "NatRule"] as const;

interface Row {
  what: string;
  wallMs: number;
  cpuMs: number;
  ops: number;
  connections: number;
  /** Sessions sshd started: the remote shells, and commands on sessions of their own. */
  sessions: number;
  /** Remote commands the hosts ran (sessions that were no remote shell, and requests to shells). */
  commands: number;
}

/** The plugin processes of one run, with what the run sends them. */
interface FrontEnd {
  pids: number[];
  /** One check per resource type in each plugin process; returns how many were sent. */
  firstChecks(): Promise<number>;
  run(phase: Phase): Promise<unknown>;
  /** The fleet's preview as the engine schedules it; returns how many resources it previewed. */
  preview?(): Promise<number>;
  stop(): Promise<void>;
}

/** One check of the first resource of each type in `specs`, before anything touches a host. */
async function checkEachType(
  plugin: Pick<ProviderClient<unknown>, "check">,
  specs: ResourceSpec[],
): Promise<number> {
  for (const t of TYPES) {
    const s = specs.find((x) => x.type.endsWith(`:${t}`));
    if (!s) throw new Error(`no ${t} in the fleet`);
    const got = await plugin.check(urnOf(s.type, `first-${t}`), {}, s.inputs);
    if (got.failures.length > 0) throw new Error(`check of ${t} failed`);
  }
  return TYPES.length;
}

/** What an engine (either driver's) does for one phase, as `pulumi up` and `destroy` run it. */
function runPhase<S>(
  engine: {
    up(specs: S[], opts: RunOptions): Promise<unknown>;
    refresh(): Promise<unknown>;
    destroy(opts: RunOptions): Promise<unknown>;
  },
  specs: S[],
  phase: Phase,
): Promise<unknown> {
  if (phase === "create") return engine.up(specs, { atOnce: true });
  if (phase === "refresh") return engine.refresh();
  return engine.destroy({ atOnce: true });
}

// The dynamic-provider plugin: one process for the fleet, each resource's connection in its inputs.
async function dynamicFrontEnd(specs: ResourceSpec[]): Promise<FrontEnd> {
  const { plugin, engine } = await startEngine();
  return {
    pids: [plugin.pid],
    firstChecks: () => checkEachType(plugin, specs),
    run: (phase) => runPhase(engine, specs, phase),
    stop: () => plugin.stop(),
  };
}

// The same resources as the native SDK registers them: its type, and the connection left to the
// provider or, as the dynamic classes send it, in each resource's inputs (a secret).
function nativeSpec(s: ResourceSpec, connection: "provider" | "resource"): NativeResourceSpec {
  const { connection: c, __provider: _p, ...inputs } = s.inputs;
  if (connection === "resource") inputs.connection = secret(c);
  return { ...s, type: `hypervisor:index:${s.type.split(":").pop() ?? ""}`, inputs };
}

// The native plugin as examples/fleet/native.ts uses it: a provider per host holding its
// connection, so a plugin process per host, the hosts at once.
async function nativeFrontEnd(lab: Lab, specs: ResourceSpec[]): Promise<FrontEnd> {
  const hosts: { engine: NativeEngine; specs: NativeResourceSpec[] }[] = [];
  try {
    for (const h of lab.hosts) {
      const own = specs
        .filter((s) => s.name.startsWith(`${h.name}-`))
        .map((s) => nativeSpec(s, "provider"));
      const engine = new NativeEngine();
      hosts.push({ engine, specs: own });
      await engine.provider("default", { connection: secret(h.connection()) });
    }
  } catch (e) {
    for (const h of hosts) await h.engine.stop();
    throw e;
  }
  const all = async (fn: (h: (typeof hosts)[number]) => Promise<unknown>): Promise<unknown> =>
    throwFirstFailure(await Promise.allSettled(hosts.map(fn)));
  return {
    pids: hosts.map((h) => h.engine.plugin().pid),
    async firstChecks() {
      await all((h) => checkEachType(h.engine.plugin(), h.specs));
      return TYPES.length * hosts.length;
    },
    run: (phase) => all((h) => runPhase(h.engine, h.specs, phase)),
    async preview() {
      await all((h) => h.engine.preview(h.specs, { atOnce: true }));
      return specs.length;
    },
    async stop() {
      for (const h of hosts) await h.engine.stop();
    },
  };
}

// The native plugin in one process for the fleet, the default provider, each resource's
// connection in its inputs: the dynamic plugin's shape, to tell what the native plugin's code
// costs from what a process per host costs.
async function nativeOneFrontEnd(specs: ResourceSpec[]): Promise<FrontEnd> {
  const engine = new NativeEngine();
  try {
    await engine.provider("default", {});
  } catch (e) {
    await engine.stop();
    throw e;
  }
  const fleet = specs.map((s) => nativeSpec(s, "resource"));
  return {
    pids: [engine.plugin().pid],
    firstChecks: () => checkEachType(engine.plugin(), fleet),
    run: (phase) => runPhase(engine, fleet, phase),
    async preview() {
      await engine.preview(fleet, { atOnce: true });
      return fleet.length;
    },
    stop: () => engine.stop(),
  };
}

/** The front ends by their `--plugin` name. */
const FRONT_ENDS: Record<string, (lab: Lab, specs: ResourceSpec[]) => Promise<FrontEnd>> = {
  dynamic: (_lab, specs) => dynamicFrontEnd(specs),
  native: nativeFrontEnd,
  "native-one": (_lab, specs) => nativeOneFrontEnd(specs),
};

// The front ends whose plugin previews a create on the hosts. The engine sends the dynamic
// provider no Create in a preview (its Configure does not say supportsPreview), only Check.
const PREVIEWS = new Set(["native", "native-one"]);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      passes: { type: "string", default: "3" },
      lab: { type: "string", default: "firstapply" },
      reconnect: { type: "boolean", default: false },
      plugin: { type: "string", default: "dynamic" },
    },
  });
  const runs = int("--runs", values.runs, 1, 20);
  const passes = int("--passes", values.passes, 2, 10);
  const front = values.plugin;
  const frontEnd = Object.hasOwn(FRONT_ENDS, front) ? FRONT_ENDS[front] : undefined;
  if (!frontEnd) {
    const names = Object.keys(FRONT_ENDS).join(", ");
    throw new Error(`--plugin takes one of ${names}, not ${JSON.stringify(front)}`);
  }
  const acct = await CpuAccounting.open();
  if (typeof acct === "string") throw new Error(`no CPU accounting: ${acct}`);
  const lab = await startLab({ name: values.lab, hosts: 3, wan: true });
  const table = new Map<string, Row[]>();
  const record = (row: Row): void => {
    table.set(row.what, [...(table.get(row.what) ?? []), row]);
  };
  let plugins = 0;
  // the run's plugin processes' resident sets summed, once configured and at their peaks, kB
  const memory: { startKb: number; peakKb: number }[] = [];
  const residentSum = async (pids: number[], key: "rssKb" | "peakKb"): Promise<number> => {
    let kb = 0;
    for (const pid of pids) {
      const r = await residentOf(pid);
      if (!r) throw new Error(`plugin process ${pid} is gone`);
      kb += r[key];
    }
    return kb;
  };
  for (const h of lab.hosts) await startRequestTrace(h);
  const counters = lab.hosts.map((h) => new SshdLogCounter(h.sshdLogPath, traceFileOf(h.sshdPid)));
  try {
    const specs = (
      await Promise.all(
        lab.hosts.map((h) => hostSpecs(h.name, h.guestNet(0), RESOURCES, h.connection())),
      )
    ).flat();
    // connections and sessions as the hosts' sshd logged them, remote commands as they and the
    // shells did
    const counts = (): { connections: number; sessions: number; commands: number } =>
      counters.reduce(
        (n, c) => {
          const u = c.update();
          return {
            connections: n.connections + u.connections,
            sessions: n.sessions + u.sessions,
            commands: n.commands + u.requests,
          };
        },
        { connections: 0, sessions: 0, commands: 0 },
      );
    // what a call cost: wall time, the CPU of the processes in `group`, connections, sessions and
    // commands
    const measure = async (
      what: string,
      group: { usageUsec(): Promise<number> },
      fn: () => Promise<number>,
    ): Promise<void> => {
      const n0 = counts();
      const c0 = await group.usageUsec();
      const t1 = performance.now();
      const ops = await fn();
      const wallMs = performance.now() - t1;
      const cpuMs = ((await group.usageUsec()) - c0) / 1000;
      // sshd and the shells log a command as it ends: the last lines may come just after it
      await new Promise((r) => setTimeout(r, 200));
      const n1 = counts();
      const connections = n1.connections - n0.connections;
      const sessions = n1.sessions - n0.sessions;
      record({
        what,
        wallMs,
        cpuMs,
        ops,
        connections,
        sessions,
        commands: n1.commands - n0.commands,
      });
    };
    for (let run = 1; run <= runs; run++) {
      // `pulumi up` previews with plugins of its own, then starts others for the update: a
      // preview's connections and shells are not the update's
      const previewing = PREVIEWS.has(front) ? await frontEnd(lab, specs) : undefined;
      try {
        if (previewing?.preview) {
          const group = await acct.group(`first-apply-preview-${run}`, previewing.pids);
          const preview = previewing.preview.bind(previewing);
          await measure("preview of the create (plugins of its own)", group, preview);
        }
      } finally {
        await previewing?.stop();
      }
      const t0 = performance.now();
      const fe = await frontEnd(lab, specs);
      try {
        plugins = fe.pids.length;
        // from /proc: the start-up came before the processes were in the run's cgroup
        let startMs = 0;
        for (const pid of fe.pids) startMs += (await procCpuUs(pid)) / 1000;
        const opened = {
          what: "plugin start-up (spawned to configured)",
          ops: 0,
          connections: 0,
          sessions: 0,
          commands: 0,
        };
        record({ ...opened, wallMs: performance.now() - t0, cpuMs: startMs });
        const startKb = await residentSum(fe.pids, "rssKb");
        const group = await acct.group(`first-apply-${run}`, fe.pids);
        await measure("first checks (one per type)", group, () => fe.firstChecks());
        for (let pass = 1; pass <= passes; pass++) {
          if (pass > 1 && values.reconnect) {
            // each host's sshd ends the plugin's connections; the plugin dials again when it next
            // needs one, so the pass opens connections and shells as the first did
            for (const h of lab.hosts) execFileSync("pkill", ["-TERM", "-P", String(h.sshdPid)]);
            await new Promise((r) => setTimeout(r, 500));
          }
          for (const phase of PHASES) {
            await measure(`pass ${pass} ${phase}`, group, async () => {
              await fe.run(phase);
              return specs.length;
            });
          }
        }
        memory.push({ startKb, peakKb: await residentSum(fe.pids, "peakKb") });
      } finally {
        await fe.stop();
      }
    }
  } finally {
    for (const c of counters) c.close();
    await acct.close();
    await lab.stop();
  }
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  out(
    `the ${front} plugin, ${plugins} process(es) per run (${runs} runs), 3 hosts x ${RESOURCES} resources, 0 ms, the parallel schedule; medians, each run's figure after it`,
  );
  out("");
  out(
    "| calls | connections | sessions | remote commands | wall ms | plugin CPU ms | CPU ms per operation |",
  );
  out(
    "| ----- | ----------- | -------- | --------------- | ------- | ------------- | -------------------- |",
  );
  for (const [what, rows] of table) {
    const each = (f: (r: Row) => number, digits: number): string =>
      medianAndEach(rows.map(f), digits);
    out(
      `| ${what} | ${each((r) => r.connections, 0)} | ${each((r) => r.sessions, 0)} | ${each((r) => r.commands, 0)} | ${each((r) => r.wallMs, 0)} | ${each((r) => r.cpuMs, 0)} | ${rows.every((r) => r.ops > 0) ? each((r) => r.cpuMs / r.ops, 1) : "-"} |`,
    );
  }
  if (memory.length > 0) {
    const each = (f: (m: { startKb: number; peakKb: number }) => number): string =>
      medianAndEach(
        memory.map((m) => f(m) / 1024),
        1,
      );
    out("");
    out(
      `plugin memory, the run's processes summed (MB): configured ${each((m) => m.startKb)}, ` +
        `peak ${each((m) => m.peakKb)}`,
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
