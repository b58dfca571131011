// The bench's memory figures: /proc's fields, which processes count as a host's sessions, and the
// report's memory table with its medians over runs.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import type { RunResult } from "../../bench/driver";
import { descendantsOf, heldBy, kbField, parentOf, residentOf } from "../../bench/memory";
import { memoryLines, medianRuns } from "../../bench/report";

function run(trial: number, pluginPeakKb: number, hostPss: number[]): RunResult {
  return {
    mode: "pooled",
    schedule: "parallel",
    delayMs: 20,
    hosts: hostPss.length,
    resources: 20,
    phases: [],
    connectionsPerHost: hostPss.map(() => 1),
    ops: [],
    startMs: 900,
    refreshChanges: [],
    trial,
    memory: {
      pluginStartKb: 120 * 1024,
      pluginPeakKb,
      hostsHeld: hostPss.map((pssKb) => ({ processes: 7, pssKb, privateKb: pssKb / 2 })),
    },
  };
}

describe("bench memory", () => {
  it("reads a kB field of /proc's status and smaps texts, and refuses a text without it", () => {
    const status = "Name:\tnode\nVmHWM:\t  163840 kB\nVmRSS:\t  127000 kB\n";
    expect(kbField(status, "VmHWM")).toBe(163840);
    expect(kbField(status, "VmRSS")).toBe(127000);
    expect(kbField("Rss:  900 kB\nPss:  412 kB\n", "Pss")).toBe(412);
    expect(() => kbField(status, "Pss")).toThrow(/no Pss/);
  });

  it("reads the parent from a stat line whose command has spaces and parentheses", () => {
    expect(parentOf("4242 (sh (x) y) S 17 4242 4242 0 -1 4194560")).toBe(17);
    expect(() => parentOf("4242 (sh) S")).toThrow(/no parent/);
  });

  it("counts a running child as this process's descendant, and not this process itself", async () => {
    const child = spawn("sleep", ["30"]);
    try {
      const pid = child.pid as number;
      const under = await descendantsOf(process.pid, [process.pid, pid]);
      expect(under).toEqual([pid]);
      // a process of another tree (the child's own view: this process is its parent, not under it)
      expect(await descendantsOf(pid, [process.pid, pid])).toEqual([]);
      const held = await heldBy([pid]);
      expect(held.processes).toBe(1);
      expect(held.pssKb).toBeGreaterThan(0);
      expect(held.privateKb).toBeGreaterThan(0);
    } finally {
      child.kill();
      await once(child, "exit");
    }
  });

  it("reads this process's resident set and does not count a process that is gone", async () => {
    const me = await residentOf(process.pid);
    expect(me?.rssKb).toBeGreaterThan(10_000);
    expect(me?.peakKb).toBeGreaterThanOrEqual(me?.rssKb ?? Infinity);
    const child = spawn("true");
    await once(child, "exit");
    expect(await residentOf(child.pid as number)).toBeUndefined();
    expect(await heldBy([child.pid as number])).toEqual({ processes: 0, pssKb: 0, privateKb: 0 });
  });

  it("prints each figure's median over the runs, the hosts summed and per host", () => {
    const runs = medianRuns([
      run(1, 160 * 1024, [4096, 9216, 6144]),
      run(2, 170 * 1024, [3072, 5120, 3072]),
      run(3, 200 * 1024, [8192, 3072, 8192]),
    ]);
    const text = memoryLines(runs, [
      { schedule: "parallel", delayMs: 20, ops: 180, controllerCpuUs: 1, peakKb: 100 * 1024 },
    ]).join("\n");
    // plugin 120.0 MB configured, peak median 170.0; hosts 4 + 5 + 6 MB (each host's median; no
    // run's own sum is 15)
    expect(text).toMatch(
      /\| 20 ms \| parallel \| pooled \| 120\.0 +\| 170\.0 +\| 21 +\| 15\.0 \/ 7\.5 +\| 5\.0 \/ 2\.5 +\|/,
    );
    expect(text).toContain(
      "the plugin alone (the same calls, a provider that does nothing): peak 100.0 MB",
    );
  });

  it("prints no memory table when no run measured it", () => {
    const r = run(1, 1, [1]);
    delete r.memory;
    expect(memoryLines([r])).toEqual([]);
  });
});
