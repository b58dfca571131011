// `npm run bench:booted` end to end, small (one run, 5 resources): CI does not run the bench, so
// this keeps it from breaking unnoticed. Checks what its table rests on (every phase ran, systemd's
// reloads counted on the host), not how fast anything was.
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.join(__dirname, "..", "..");

describe("npm run bench:booted", () => {
  it("creates, refreshes and destroys the job on a booted host it starts, and counts systemd's reloads", async () => {
    const args = ["tsx", "bench/booted.ts", "--repeat", "1", "--resources", "5"];
    const r = await promisify(execFile)("npx", args, {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`bench:booted failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
    });
    const rows = new Map<string, { wall: number; cpu: number; reloads: number }>();
    for (const line of r.stdout.split("\n")) {
      const m = /^\| (\w+) \| (\w+) \| ([\d.]+) \(.*\) \| ([\d.]+) \(.*\) \| (\d+) \(.*\) \|$/.exec(
        line,
      );
      if (m) {
        rows.set(`${m[1]} ${m[2]}`, {
          wall: Number(m[3]),
          cpu: Number(m[4]),
          reloads: Number(m[5]),
        });
      }
    }
    expect([...rows.keys()]).toEqual([
      "parallel create",
      "parallel refresh",
      "parallel destroy",
      "serial create",
      "serial refresh",
      "serial destroy",
    ]);
    for (const [key, row] of rows) {
      expect([key, row.wall > 0, row.cpu > 0]).toEqual([key, true, true]);
    }
    // 5 objects, each a unit: one reload each one after another, shared ones at once; none to read
    expect(rows.get("serial create")?.reloads).toBe(5);
    expect(rows.get("serial destroy")?.reloads).toBe(5);
    for (const key of ["parallel create", "parallel destroy"]) {
      expect(rows.get(key)?.reloads).toBeGreaterThanOrEqual(1);
      expect(rows.get(key)?.reloads).toBeLessThanOrEqual(5);
    }
    expect([rows.get("parallel refresh")?.reloads, rows.get("serial refresh")?.reloads]).toEqual([
      0, 0,
    ]);
  }, 600_000);
});
