// `npm run bench`: converges a fleet of H lab hosts x R resources through the dynamic-provider
// plugin (driven the way the engine drives it), then a no-op refresh, then destroy; once with the
// pooled SSH connection (one per host) and once with one fresh connection per command (the model
// of @pulumi/command, PULUMI_HYPERVISOR_SSH_POOL=off), each without and with added latency on the
// controller-to-host link (bench/relay.ts). SSH connections and sessions (remote commands) are
// counted on the hosts' side, from each lab sshd's log (LogLevel VERBOSE logs "Connection from"
// per connection and "Starting session" per exec channel), so the plugin's own counters are not
// needed. Prints tables and a verdict per target; exits 1 when a run failed (not when a target is
// missed: the figures are the result).
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { startLab } from "../lab";
import { CpuAccounting } from "./cgroup";
import { runOne, type RunCpu, type RunResult } from "./driver";
import { parseBenchArgs, type BenchOptions } from "./options";
import { startRelay, type Relay } from "./relay";
import { renderReport, s } from "./report";

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
  log(`starting lab "${opts.labName}": ${opts.hosts} hosts with a WAN`);
  const lab = await startLab({ name: opts.labName, hosts: opts.hosts, wan: true });
  const runs: RunResult[] = [];
  let failed = false;
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
              await startRelay({ targetHost: h.address, targetPort: h.port, delayMs }),
            );
          }
        }
        for (const schedule of opts.schedules) {
          for (const mode of opts.modes) {
            runs.push(await runOne(lab, opts, mode, schedule, delayMs, relays, log, cpu));
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
    if (typeof acct !== "string") await acct.close();
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
