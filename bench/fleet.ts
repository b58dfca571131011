// `npm run bench`: converges a fleet of H lab hosts x R resources through the dynamic-provider
// plugin (driven the way the engine drives it), then a no-op refresh, then destroy; once with the
// pooled SSH connection (one per host), once with one fresh connection per command (the model of
// @pulumi/command, PULUMI_HYPERVISOR_SSH_POOL=off) and once with the baseline, the provider's code
// from before the work on controller CPU (bench/baseline.ts), each without and with added latency
// on the controller-to-host link (bench/relay.ts). Then the same job by the tools users would pick
// instead, on the same hosts and links (bench/peers.ts): Ansible tuned and with its defaults (run
// twice: the second must report changed=0) and the floor (one ssh per host, one script). Every
// tool's end state is compared with the provider's (bench/state.ts). SSH connections and sessions
// are counted on the hosts' side, from each lab sshd's log; CPU-seconds of the controller (the
// plugin, or the tool's process tree) and of the hosts (each sshd and what it ran) from cgroup v2
// (bench/cgroup.ts). Prints tables and a verdict per target; exits 1 when a run failed (not when a
// target is missed: the figures are the result).
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { startLab, type LabHost } from "../lab";
import { prepareBaseline } from "./baseline";
import { CpuAccounting } from "./cgroup";
import type { ResourceState } from "../lab/engine/engine";
import { runOne, type RunCpu, type RunResult } from "./driver";
import { parseBenchArgs, type BenchOptions } from "./options";
import {
  ensureAnsible,
  runAnsible,
  runFloor,
  targets,
  type Measure,
  type PeerResult,
} from "./peers";
import { recordingOf, runPluginAlone, type PluginAloneResult, type Recorded } from "./plugin-alone";
import { startRelay, type Relay } from "./relay";
import { startRequestTrace } from "./sshd-log";
import type { SameState } from "./report";
import { cleanHost, hostState, stateDiff } from "./state";
import { renderReport, s } from "./report";

// Clean hosts with an empty request trace (the long-lived remote shell appends to it when it exists).
async function prepareHosts(hosts: LabHost[]): Promise<void> {
  await Promise.all(
    hosts.map(async (h) => {
      await cleanHost(h);
      await startRequestTrace(h);
    }),
  );
}

// Compares every host's state with the reference (recorded by the first call); true when equal.
async function compareStates(
  hosts: LabHost[],
  reference: Map<string, string>,
  tool: string,
  log: (line: string) => void,
): Promise<boolean> {
  let same = true;
  for (const h of hosts) {
    const got = await hostState(h);
    const want = reference.get(h.name);
    if (want === undefined) {
      reference.set(h.name, got);
      continue;
    }
    const diff = stateDiff(want, got);
    if (diff !== "") {
      same = false;
      log(`  ${tool}: ${h.name} differs from the provider's state:\n${diff}`);
    }
  }
  return same;
}

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
  // built before the lab starts, so that a clone without the baseline's commit fails at once
  if (opts.modes.includes("baseline")) prepareBaseline(log);
  log(`starting lab "${opts.labName}": ${opts.hosts} hosts with a WAN`);
  const lab = await startLab({ name: opts.labName, hosts: opts.hosts, wan: true });
  const runs: RunResult[] = [];
  const peers: PeerResult[] = [];
  const sameState: SameState[] = [];
  const alone: PluginAloneResult[] = [];
  const peerFailures: string[] = [];
  // Each host's state after the first provider apply: what every other tool must leave too.
  const reference = new Map<string, string>();
  let failed = false;
  // Compares every host's state with the provider's after a tool's apply, and records the verdict.
  const checkState = (tool: string, delayMs: number) => async (): Promise<void> => {
    const same = await compareStates(lab.hosts, reference, tool, log);
    sameState.push({ tool, delayMs, same });
    if (!same) failed = true;
  };
  if (opts.peers.some((p) => p.startsWith("ansible"))) await ensureAnsible(log);
  const acct = await CpuAccounting.open();
  let cpu: RunCpu | undefined;
  if (typeof acct === "string") {
    log(`no CPU accounting: ${acct}`);
  } else {
    const hosts = [];
    for (const h of lab.hosts) hosts.push(await acct.group(`host-${h.name}`, [h.sshdPid]));
    cpu = { acct, hosts };
  }
  try {
    for (const delayMs of opts.delays) {
      const relays = new Map<string, Relay>();
      try {
        if (delayMs > 0) {
          for (const h of lab.hosts) {
            relays.set(
              h.name,
              await startRelay({
                targetHost: h.address,
                targetPort: h.port,
                delayMs,
                ...(opts.bandwidthMbit !== undefined ? { bandwidthMbit: opts.bandwidthMbit } : {}),
              }),
            );
          }
        }
        // Each provider mode and the floor run --repeat times, interleaved, so that a slow minute
        // of the machine hits every tool alike; Ansible (slow, far from its target) runs once.
        for (let trial = 1; trial <= opts.repeat; trial++) {
          if (opts.repeat > 1) log(`run ${trial} of ${opts.repeat} at ${delayMs} ms`);
          await prepareHosts(lab.hosts);
          for (const schedule of opts.schedules) {
            for (const mode of opts.modes) {
              const check = checkState(`provider ${mode} ${schedule}`, delayMs);
              // what the pooled run's plugin answered, for the plugin-alone run (below)
              let recorded: Recorded[] | undefined;
              const afterCreate = async (states: ResourceState[]): Promise<void> => {
                await check();
                if (mode === "pooled") recorded = recordingOf(states);
              };
              runs.push({
                ...(await runOne(
                  lab,
                  opts,
                  mode,
                  schedule,
                  delayMs,
                  relays,
                  log,
                  cpu,
                  afterCreate,
                )),
                trial,
              });
              // The plugin's own CPU does not depend on the link: measured at the first delay.
              if (recorded && cpu && delayMs === opts.delays[0]) {
                const a = await runPluginAlone(
                  lab,
                  opts.resources,
                  schedule,
                  delayMs,
                  relays,
                  recorded,
                  cpu,
                );
                alone.push({ ...a, trial });
                log(
                  `  ${schedule} plugin alone: controller CPU ${(a.controllerCpuUs / 1e6).toFixed(2)} s ` +
                    `for ${a.ops} operations`,
                );
              }
            }
          }
          const m: Measure = { acct: cpu?.acct, hostGroups: cpu?.hosts ?? [] };
          const last = opts.delays[opts.delays.length - 1];
          for (const peer of opts.peers) {
            // Ansible with its defaults is the slowest run by far: by default only at the last delay.
            if (peer === "ansible-defaults" && !opts.peersEveryDelay && delayMs !== last) continue;
            if (peer !== "floor" && trial > 1) continue;
            await prepareHosts(lab.hosts);
            const ts = targets(lab.hosts, opts.resources, relays);
            const check = checkState(peer, delayMs);
            let r: PeerResult;
            try {
              r =
                peer === "floor"
                  ? await runFloor(m, ts, delayMs)
                  : await runAnsible(m, ts, peer, delayMs, check);
            } catch (e) {
              // A tool that failed is reported, and the run exits 1; the other tools still run.
              failed = true;
              peerFailures.push(`${peer} at ${delayMs} ms`);
              log(`  ${peer} ${delayMs} ms FAILED: ${e instanceof Error ? e.message : String(e)}`);
              continue;
            }
            if (peer === "floor") await check();
            peers.push({ ...r, trial });
            log(
              `  ${peer} ${delayMs} ms apply: ${s(r.apply.wallMs)} s, ${r.apply.connections} ` +
                `connections, ${r.apply.sessions} sessions` +
                (r.noop ? `; no-op: ${s(r.noop.wallMs)} s, changed=${r.noop.changed ?? "?"}` : ""),
            );
            if (r.noop && r.noop.changed !== 0) {
              log(
                `  ${peer}: the second run changed ${r.noop.changed ?? "?"} things (not idempotent)`,
              );
              failed = true;
            }
          }
        }
        await Promise.all(lab.hosts.map(cleanHost));
      } finally {
        for (const r of relays.values()) await r.close();
      }
    }
  } catch (e) {
    failed = true;
    log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    if (typeof acct !== "string") await acct.close();
    await lab.stop();
  }
  log("");
  log(renderReport(opts, runs, peers, sameState, alone));
  if (peerFailures.length > 0) log(`FAILED: ${peerFailures.join(", ")}`);
  log(`\nbench took ${s(performance.now() - t0)} s`);
  if (opts.json) {
    await writeFile(
      path.resolve(opts.json),
      JSON.stringify({ options: opts, runs, peers, sameState, alone }, null, 2) + "\n",
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
