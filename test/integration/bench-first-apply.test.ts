// `npm run bench:first-apply` end to end, small (one run, two passes): CI does not run the bench,
// so this keeps it from breaking unnoticed. Checks what its table rests on (every call measured,
// the connections each pass opened), not how fast anything was.
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.join(__dirname, "..", "..");

interface Row {
  connections: number;
  wall: number;
  cpu: number;
}

/** The plugins' memory line: their resident sets summed once configured and at their peaks, MB. */
interface Memory {
  configured: number;
  peak: number;
}

/**
 * Runs the tool with `args`; returns its table's rows by their first column, its plugins and
 * their memory.
 */
async function firstApply(
  args: string[],
): Promise<{ rows: Map<string, Row>; processes: number; memory: Memory }> {
  const r = await promisify(execFile)("npx", ["tsx", "bench/first-apply.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`bench:first-apply failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  });
  const rows = new Map<string, Row>();
  const line =
    /^\| ([\w ()-]+?) \| (\d+) \(.*\) \| (\d+) \(.*\) \| (\d+) \(.*\) \| (?:[\d.]+ \(.*\)|-) \|$/;
  for (const l of r.stdout.split("\n")) {
    const m = line.exec(l);
    if (m)
      rows.set(m[1] ?? "", { connections: Number(m[2]), wall: Number(m[3]), cpu: Number(m[4]) });
  }
  const processes = Number(/ plugin, (\d+) process\(es\) per run/.exec(r.stdout)?.[1] ?? NaN);
  const mem = /^plugin memory, .*: configured ([\d.]+) \(.*\), peak ([\d.]+) \(.*\)$/m.exec(
    r.stdout,
  );
  const memory = { configured: Number(mem?.[1] ?? NaN), peak: Number(mem?.[2] ?? NaN) };
  return { rows, processes, memory };
}

/** One run of two passes: the least that has a first and a warm pass. */
const SMALL = ["--runs", "1", "--passes", "2"];

const ROWS = [
  "plugin start-up (spawned to configured)",
  "first checks (one per type)",
  "pass 1 create",
  "pass 1 refresh",
  "pass 1 destroy",
  "pass 2 create",
  "pass 2 refresh",
  "pass 2 destroy",
];

// every call measured, and each plugin process's memory (tens of MB for node alone) counted
function expectMeasured(rows: Map<string, Row>, memory: Memory, processes: number): void {
  expect([...rows.keys()]).toEqual(ROWS);
  for (const [key, row] of rows) {
    expect([key, row.wall > 0, row.cpu > 0]).toEqual([key, true, true]);
  }
  expect(memory.configured).toBeGreaterThan(30 * processes);
  expect(memory.peak).toBeGreaterThan(memory.configured);
}

describe("npm run bench:first-apply", () => {
  it("measures a fresh dynamic plugin's first calls and passes, and reconnects between passes", async () => {
    const { rows, processes, memory } = await firstApply([
      ...SMALL,
      "--reconnect",
      "--lab",
      "fasmoke",
    ]);
    expect(processes).toBe(1);
    expectMeasured(rows, memory, processes);
    // checks touch no host; each create dials the three hosts (the second after --reconnect);
    // refresh and destroy reuse the connections their create opened
    expect([...rows].map(([key, row]) => [key, row.connections])).toEqual(
      ROWS.map((k) => [k, / create$/.test(k) ? 3 : 0]),
    );
  }, 600_000);

  it.each([
    ["a process per host", "native", "fasmoken", 3],
    ["one process for the fleet", "native-one", "fasmokeo", 1],
  ] as const)(
    "measures the native plugin, %s, with the connections the first pass opened",
    async (_what, front, lab, count) => {
      const { rows, processes, memory } = await firstApply([
        ...SMALL,
        "--plugin",
        front,
        "--lab",
        lab,
      ]);
      expect(processes).toBe(count);
      expectMeasured(rows, memory, processes);
      // each host dialled once, from its provider's connection or from its resources' own
      expect([...rows].map(([key, row]) => [key, row.connections])).toEqual(
        ROWS.map((k) => [k, k === "pass 1 create" ? 3 : 0]),
      );
    },
    600_000,
  );
});
