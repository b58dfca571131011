// `npm run bench:booted [-- --repeat 3]`: the bench's job for one host (4 bridges, 14 taps, a
// DnsmasqInstance and a NatRule) on a booted lab host, where PID 1 is systemd and every object
// persists as a unit, which the fleet bench's hosts (network namespaces) do not show. For each
// schedule (parallel, as Pulumi's up sends operations; serial) it creates, refreshes and destroys
// the job through the dynamic-provider plugin and prints the wall time, the host's CPU (its
// cgroup, PID 1 included, read over SSH inside the host before and after each phase: a few ms of
// that reading are in each figure) and how many times systemd reloaded its units (PID 1's
// "Reloading." lines in the journal). Runs are interleaved (--repeat), the tables give medians.
// Needs root and what the booted lab needs (lab/booted/README.md); starts and removes its host.
// Run it with no other booted host up: where PID 1 is not systemd, nspawn puts every container in
// the same cgroup (payload), whose CPU each of them reads as its own.
import { parseArgs } from "node:util";
import type { BootedHost } from "../lab/booted/booted-host";
import { sshOk, startHost, systemdReloads } from "../lab/booted/index";
import { startEngine } from "../lab/harness";
import { Deployment, PHASES } from "./driver";
import { parseCpuStat } from "./cgroup";
import { hostSpecs } from "./fleet-specs";
import { int, type Schedule } from "./options";
import { medianAndEach, s } from "./report";

const SCHEDULES: readonly Schedule[] = ["parallel", "serial"];

interface Figures {
  wallMs: number;
  hostCpuMs: number;
  reloads: number;
}

// The host's CPU in microseconds: its cgroup's usage_usec as the host sees its own root (a
// container of a hybrid hierarchy has it under unified/).
async function hostCpuUs(h: BootedHost): Promise<number> {
  const text = await sshOk(h, [
    "sh",
    "-c",
    "cat /sys/fs/cgroup/unified/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpu.stat",
  ]);
  return parseCpuStat(text);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      repeat: { type: "string", default: "3" },
      resources: { type: "string", default: "20" },
    },
  });
  const repeat = int("--repeat", values.repeat, 1, 20);
  const resources = int("--resources", values.resources, 3, 100);
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  const h = await startHost(`bb${process.pid % 100000}`, { log, owner: process.pid });
  const runs = new Map<string, Figures[]>();
  try {
    for (let run = 1; run <= repeat; run++) {
      for (const schedule of SCHEDULES) {
        const { plugin } = await startEngine();
        try {
          const specs = await hostSpecs(h.name, "198.18.250", resources, h.connection());
          const driver = new Deployment(plugin, specs);
          for (const phase of PHASES) {
            await new Promise((r) => setTimeout(r, 500));
            const reloads = await systemdReloads(h);
            const cpu = await hostCpuUs(h);
            const t0 = performance.now();
            await driver.run(phase, schedule);
            const wallMs = performance.now() - t0;
            const hostCpuMs = ((await hostCpuUs(h)) - cpu) / 1000;
            const f = { wallMs, hostCpuMs, reloads: (await systemdReloads(h)) - reloads };
            const key = `${schedule} ${phase}`;
            runs.set(key, [...(runs.get(key) ?? []), f]);
            log(
              `run ${run} ${key}: ${s(wallMs)} s, host CPU ${s(hostCpuMs)} s, ${f.reloads} reloads`,
            );
          }
        } finally {
          await plugin.stop();
        }
      }
    }
  } finally {
    await h.stop();
  }
  const rows = [...runs].map(([key, fs]) => {
    const [schedule = "", phase = ""] = key.split(" ");
    const each = (f: (x: Figures) => number, digits: number): string =>
      medianAndEach(fs.map(f), digits);
    return `| ${schedule} | ${phase} | ${each((x) => x.wallMs / 1000, 2)} | ${each((x) => x.hostCpuMs / 1000, 2)} | ${each((x) => x.reloads, 0)} |`;
  });
  process.stdout.write(
    [
      `one booted host, ${resources} resources, ${repeat} runs (median, then each run)`,
      "| schedule | phase | wall s | host CPU s | systemd reloads |",
      "| -------- | ----- | ------ | ---------- | --------------- |",
      ...rows,
      "",
    ].join("\n"),
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:booted: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
