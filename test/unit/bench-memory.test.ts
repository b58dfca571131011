// The bench's memory figures: /proc's fields, which processes count as a host's sessions, and the
// report's memory table with its medians over runs.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { RunResult } from "../../bench/driver";
import {
  heldBy,
  kbField,
  linksOf,
  residentOf,
  sessionsIn,
  sessionsUnder,
} from "../../bench/memory";
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

  it("reads the parent and the session from a stat line whose command has spaces and parentheses", () => {
    expect(linksOf("4242 (sh (x) y) S 17 4242 4240 0 -1 4194560")).toEqual({
      parent: 17,
      session: 4240,
    });
    expect(() => linksOf("4242 (sh) S")).toThrow(/no parent or session/);
  });

  it("counts a session's processes, one forked away from it included, and not a daemon's", async () => {
    // a session leader (sleep, exec'd by the sh), a sleep that left it for the reaper but stays in
    // its session (as a remote shell's perl does), and one in a session of its own (as dnsmasq)
    const child = spawn(
      "sh",
      ["-c", "(sleep 30 & echo $!); (setsid sleep 30 & echo $!); exec sleep 30"],
      { detached: true, stdio: ["ignore", "pipe", "ignore"] },
    );
    const leader = child.pid as number;
    let text = "";
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      text += chunk.toString();
      if (text.split("\n").length > 2) break;
    }
    const [orphan, daemon] = text.trim().split("\n").map(Number) as [number, number];
    try {
      const all = [process.pid, leader, orphan, daemon];
      expect(await sessionsUnder(process.pid, all)).toEqual([leader, orphan]);
      // the orphan is neither's child: only its session ties it to the leader
      const orphanLinks = linksOf(readFileSync(`/proc/${orphan}/stat`, "utf8"));
      expect([process.pid, leader]).not.toContain(orphanLinks.parent);
      expect(orphanLinks.session).toBe(leader);
      const held = await heldBy([leader, orphan]);
      expect(held.processes).toBe(2);
      expect(held.pssKb).toBeGreaterThan(0);
      expect(held.privateKb).toBeGreaterThan(0);
    } finally {
      for (const pid of [orphan, daemon, leader]) process.kill(pid, "SIGKILL");
    }
  });

  it("ends a parent chain that loops (a pid reused between the reads) and counts none of it", () => {
    // 10 is the listening sshd; 11 its connection, 12 a shell under it, 13 a perl in the shell's
    // session; 20 and 21 name each other as parents; 30 is a daemon in a session of its own
    const links = new Map([
      [10, { parent: 1, session: 10 }],
      [11, { parent: 10, session: 11 }],
      [12, { parent: 11, session: 12 }],
      [13, { parent: 1, session: 12 }],
      [20, { parent: 21, session: 20 }],
      [21, { parent: 20, session: 21 }],
      [30, { parent: 1, session: 30 }],
    ]);
    expect(sessionsIn(10, [10, 11, 12, 13, 20, 21, 30, 40], links)).toEqual([11, 12, 13]);
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
