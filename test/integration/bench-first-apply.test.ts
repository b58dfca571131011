// `npm run bench:first-apply` end to end, small (one run, two passes, connections ended between
// them): CI does not run the bench, so this keeps it from breaking unnoticed. Checks what its
// table rests on (every call measured, the connections each pass opened), not how fast anything
// was.
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.join(__dirname, "..", "..");

describe("npm run bench:first-apply", () => {
  it("measures a fresh plugin's first checks and passes, and reconnects between passes", async () => {
    const args = ["tsx", "bench/first-apply.ts", "--runs", "1", "--passes", "2", "--reconnect"];
    const r = await promisify(execFile)("npx", [...args, "--lab", "fasmoke"], {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(
        `bench:first-apply failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`,
      );
    });
    const rows = new Map<string, { connections: number; wall: number; cpu: number }>();
    for (const line of r.stdout.split("\n")) {
      const m =
        /^\| ([\w ()]+?) \| (\d+) \(.*\) \| (\d+) \(.*\) \| (\d+) \(.*\) \| [\d.]+ \(.*\) \|$/.exec(
          line,
        );
      if (m) {
        rows.set(m[1] ?? "", { connections: Number(m[2]), wall: Number(m[3]), cpu: Number(m[4]) });
      }
    }
    expect([...rows.keys()]).toEqual([
      "first checks (one per type)",
      "pass 1 create",
      "pass 1 refresh",
      "pass 1 destroy",
      "pass 2 create",
      "pass 2 refresh",
      "pass 2 destroy",
    ]);
    for (const [key, row] of rows) {
      expect([key, row.wall > 0, row.cpu > 0]).toEqual([key, true, true]);
    }
    // checks touch no host; each create dials the three hosts (the second after --reconnect);
    // refresh and destroy reuse the connections their create opened
    expect([...rows].map(([key, row]) => [key, row.connections])).toEqual([
      ["first checks (one per type)", 0],
      ["pass 1 create", 3],
      ["pass 1 refresh", 0],
      ["pass 1 destroy", 0],
      ["pass 2 create", 3],
      ["pass 2 refresh", 0],
      ["pass 2 destroy", 0],
    ]);
  }, 600_000);
});
