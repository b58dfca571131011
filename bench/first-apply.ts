// `npm run bench:first-apply [-- --runs 3 --passes 3 --reconnect --lab firstapply]` (root):
// what a plugin process pays the first time. Each run starts a fresh dynamic-provider plugin on the
// bench's fleet (3 lab hosts x 20 resources, no added delay, the parallel schedule) and sends it,
// in this order:
//   - one check per resource type, before anything touches a host: the first call into the
//     provider loads its modules (and zod's, ssh2's) and runs its check path cold;
//   - the fleet's create, refresh and destroy, --passes times over, in the same process.
// The first pass is what every `pulumi up` pays (each starts its own plugin): connections and
// shells opened, every code path run for the first time. The later passes send the same calls to
// code that has run, over the connections and shells the first one opened; with --reconnect each
// host's sshd ends the plugin's connections before each later pass, so it opens its connections
// and shells again, and only the code is warm. The plugin's CPU comes from a cgroup of its own
// (cgroup v2 `cpu.stat`), as in `npm run bench`; connections from the hosts' sshd logs.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { urnOf } from "../lab/engine/engine";
import { startEngine } from "../lab/harness";
import { startLab } from "../lab/lab";
import { CpuAccounting } from "./cgroup";
import { PHASES, type Phase } from "./driver";
import { hostSpecs } from "./fleet-specs";
import { int } from "./options";

const RESOURCES = 20;
const TYPES = ["Bridge", "TapDevice", "DnsmasqInstance", "NatRule"] as const;

interface Row {
  what: string;
  wallMs: number;
  cpuMs: number;
  ops: number;
  connections: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      passes: { type: "string", default: "3" },
      lab: { type: "string", default: "firstapply" },
      reconnect: { type: "boolean", default: false },
    },
  });
  const runs = int("--runs", values.runs, 1, 20);
  const passes = int("--passes", values.passes, 2, 10);
  const acct = await CpuAccounting.open();
  if (typeof acct === "string") throw new Error(`no CPU accounting: ${acct}`);
  const lab = await startLab({ name: values.lab, hosts: 3, wan: true });
  const table = new Map<string, Row[]>();
  const record = (row: Row): void => {
    table.set(row.what, [...(table.get(row.what) ?? []), row]);
  };
  try {
    const specs = (
      await Promise.all(
        lab.hosts.map((h) => hostSpecs(h.name, h.guestNet(0), RESOURCES, h.connection())),
      )
    ).flat();
    for (let run = 1; run <= runs; run++) {
      const { plugin, engine } = await startEngine();
      const group = await acct.group(`first-apply-${run}`, [plugin.pid]);
      // connections as the hosts' sshd logged them (LogLevel VERBOSE: one line per connection)
      const connections = (): number =>
        lab.hosts.reduce(
          (n, h) =>
            n + (readFileSync(h.sshdLogPath, "utf8").match(/\bConnection from \d/g) ?? []).length,
          0,
        );
      const measure = async (what: string, ops: number, fn: () => Promise<unknown>) => {
        const n0 = connections();
        const c0 = await group.usageUsec();
        const t0 = performance.now();
        await fn();
        const wallMs = performance.now() - t0;
        const cpuMs = ((await group.usageUsec()) - c0) / 1000;
        record({ what, wallMs, cpuMs, ops, connections: connections() - n0 });
      };
      try {
        await measure("first checks (one per type)", TYPES.length, async () => {
          for (const t of TYPES) {
            const s = specs.find((x) => x.type.endsWith(`:${t}`));
            if (!s) throw new Error(`no ${t} in the fleet`);
            const got = await plugin.check(urnOf(s.type, `first-${t}`), {}, s.inputs);
            if (got.failures.length > 0) throw new Error(`check of ${t} failed`);
          }
        });
        for (let pass = 1; pass <= passes; pass++) {
          if (pass > 1 && values.reconnect) {
            // each host's sshd ends the plugin's connections; the plugin dials again when it next
            // needs one, so the pass opens connections and shells as the first did
            for (const h of lab.hosts) execFileSync("pkill", ["-TERM", "-P", String(h.sshdPid)]);
            await new Promise((r) => setTimeout(r, 500));
          }
          for (const phase of PHASES) {
            await measure(`pass ${pass} ${phase}`, specs.length, () => runPhase(phase));
          }
        }
      } finally {
        await plugin.stop();
      }
      async function runPhase(phase: Phase): Promise<unknown> {
        if (phase === "create") return engine.up(specs, { atOnce: true });
        if (phase === "refresh") return engine.refresh();
        return engine.destroy({ atOnce: true });
      }
    }
  } finally {
    await acct.close();
    await lab.stop();
  }
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  out(
    `one plugin process per run (${runs} runs), 3 hosts x ${RESOURCES} resources, 0 ms, the parallel schedule; medians, each run's figure after it`,
  );
  out("");
  out("| calls | connections | wall ms | plugin CPU ms | CPU ms per operation |");
  out("| ----- | ----------- | ------- | ------------- | -------------------- |");
  for (const [what, rows] of table) {
    const each = (f: (r: Row) => number, digits: number): string =>
      `${median(rows.map(f)).toFixed(digits)} (${rows.map((r) => f(r).toFixed(digits)).join(", ")})`;
    out(
      `| ${what} | ${each((r) => r.connections, 0)} | ${each((r) => r.wallMs, 0)} | ${each((r) => r.cpuMs, 0)} | ${each((r) => r.cpuMs / r.ops, 1)} |`,
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
