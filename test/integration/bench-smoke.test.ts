// The bench end to end on a lab host of its own (`npm run bench -- --quick`, pooled mode and the
// floor): CI does not run the bench, so this keeps it from breaking unnoticed. Checks what the
// report's figures rest on, not how fast anything was.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { RunResult } from "../../bench/driver";
import type { PluginAloneResult } from "../../bench/plugin-alone";

const ROOT = path.join(__dirname, "..", "..");
const dir = mkdtempSync(path.join(tmpdir(), "bench-smoke-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("npm run bench -- --quick", () => {
  it("converges, refreshes and destroys through the plugin, splits its CPU and matches the floor's state", async () => {
    const json = path.join(dir, "bench.json");
    const args = ["tsx", "bench/fleet.ts", "--quick", "--modes", "pooled", "--peers", "floor"];
    const r = await promisify(execFile)("npx", [...args, "--lab", "bsmoke", "--json", json], {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`the bench failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
    });
    // the bench's CPU figures need cgroup v2 accounting (root, a writable cgroup2 mount)
    expect(r.stdout, "the bench had no CPU accounting").not.toContain("no CPU accounting");
    const out = JSON.parse(readFileSync(json, "utf8")) as {
      runs: RunResult[];
      alone: PluginAloneResult[];
      sameState: { tool: string; same: boolean }[];
    };
    // 1 host x 5 resources, serial: a create, a read and a delete each, on one connection
    const [run] = out.runs;
    expect(out.runs).toHaveLength(1);
    expect(run?.phases.map((p) => [p.phase, p.ops])).toEqual([
      ["create", 5],
      ["refresh", 5],
      ["destroy", 5],
    ]);
    expect(run?.connectionsPerHost).toEqual([1]);
    expect(run?.phases.every((p) => (p.controllerCpuUs ?? 0) > 0)).toBe(true);
    // each operation's host CPU: every one starts processes on the host, and one host's
    // operations in a phase, one after another, add up to no more than the phase's
    expect(run?.ops).toHaveLength(15);
    expect(run?.ops.every((o) => (o.hostCpuUs ?? 0) > 0)).toBe(true);
    for (const p of run?.phases ?? []) {
      const ops = run?.ops.filter((o) => o.phase === p.phase) ?? [];
      expect(ops.reduce((a, o) => a + (o.hostCpuUs ?? 0), 0)).toBeLessThanOrEqual(p.hostCpuUs ?? 0);
    }
    expect(r.stdout).toContain("| median host CPU ms |");
    expect(r.stdout).toMatch(/^\| create Bridge +\|.*\| \d+\.\d +\|$/m);
    // the same calls again against the provider that does nothing: cheaper than the real ones
    expect(out.alone.map((a) => [a.schedule, a.ops])).toEqual([["serial", 15]]);
    const real = run?.phases.reduce((a, p) => a + (p.controllerCpuUs ?? 0), 0) ?? 0;
    expect(out.alone[0]?.controllerCpuUs).toBeGreaterThan(0);
    expect(out.alone[0]?.controllerCpuUs).toBeLessThan(real);
    expect(r.stdout).toMatch(/of which the dynamic-provider plugin alone .*: \d+\.\d ms/);
    expect(r.stdout).toMatch(/and the provider's own work: \d+\.\d ms/);
    // memory: the plugin grew from configured to its peak; the host's one shell (its sh and
    // perl) and the connection's sshd were held after the create, the dnsmasq not counted
    const mem = run?.memory;
    expect(mem?.pluginStartKb).toBeGreaterThan(30_000);
    expect(mem?.pluginPeakKb).toBeGreaterThan(mem?.pluginStartKb ?? Infinity);
    expect(mem?.hostsHeld).toHaveLength(1);
    expect(mem?.hostsHeld[0]?.processes).toBeGreaterThanOrEqual(3);
    expect(mem?.hostsHeld[0]?.processes).toBeLessThanOrEqual(4);
    expect(mem?.hostsHeld[0]?.privateKb).toBeGreaterThan(0);
    expect(out.alone[0]?.peakKb).toBeGreaterThan(30_000);
    expect(r.stdout).toMatch(/^\| 0 ms +\| serial +\| pooled +\| \d+\.\d +\| \d+\.\d +\| \d+ +\|/m);
    // the floor left the provider's host state
    expect(out.sameState).toEqual(
      expect.arrayContaining([expect.objectContaining({ tool: "floor", same: true })]),
    );
    expect(r.stdout).toContain("check: every tool leaves the provider's host state: yes");
  }, 300_000);
});
