// `npm run bench:first-apply` end to end, small (one run, two passes): CI does not run the bench,
// so this keeps it from breaking unnoticed. Checks what its table rests on (every call measured,
// the connections each pass opened, the remote commands the hosts ran), not how fast anything was.
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = path.join(__dirname, "..", "..");

interface Row {
  connections: number;
  sessions: number;
  commands: number;
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
  const figure = "(\\d+) \\(.*?\\)";
  const line = new RegExp(
    `^\\| ([\\w ()-]+?) \\| ${figure} \\| ${figure} \\| ${figure} \\| ${figure} \\| ${figure} \\| (?:[\\d.]+ \\(.*\\)|-) \\|$`,
  );
  for (const l of r.stdout.split("\n")) {
    const m = line.exec(l);
    if (m) {
      const [connections, sessions, commands, wall, cpu] = m.slice(2, 7).map(Number) as [
        number,
        number,
        number,
        number,
        number,
      ];
      rows.set(m[1] ?? "", { connections, sessions, commands, wall, cpu });
    }
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

// The native plugins preview the create first, with processes of their own.
const PREVIEW = "preview of the create (plugins of its own)";

// every call measured, and each plugin process's memory (tens of MB for node alone) counted
function expectMeasured(
  rows: Map<string, Row>,
  memory: Memory,
  processes: number,
  names = ROWS,
): void {
  expect([...rows.keys()]).toEqual(names);
  for (const [key, row] of rows) {
    expect([key, row.wall > 0, row.cpu > 0]).toEqual([key, true, true]);
  }
  expect(memory.configured).toBeGreaterThan(30 * processes);
  expect(memory.peak).toBeGreaterThan(memory.configured);
  // two remote commands per create and delete (60 resources), none for the checks
  for (const key of ROWS.filter((k) => /(create|destroy)$/.test(k))) {
    expect([key, rows.get(key)?.commands]).toEqual([key, 120]);
  }
  expect(rows.get("first checks (one per type)")?.commands).toBe(0);
  // the first create opens each host's remote shells; the checks open no session
  expect(rows.get("pass 1 create")?.sessions).toBeGreaterThanOrEqual(3);
  expect(rows.get("first checks (one per type)")?.sessions).toBe(0);
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
      expectMeasured(rows, memory, processes, [PREVIEW, ...ROWS]);
      // each host dialled once by the preview's plugins and once by the run's, from its
      // provider's connection or from its resources' own
      expect([...rows].map(([key, row]) => [key, row.connections])).toEqual(
        [PREVIEW, ...ROWS].map((k) => [k, k === PREVIEW || k === "pass 1 create" ? 3 : 0]),
      );
      // the previews the engine sends at once share commands: at least one per host for each of
      // its two dependency levels (the bridges; the taps, dnsmasq and NAT on them), and far fewer
      // than one per resource (60 sent one by one)
      const previewed = rows.get(PREVIEW)?.commands ?? 0;
      expect(previewed).toBeGreaterThanOrEqual(3 * 2);
      expect(previewed).toBeLessThan(60 / 2);
    },
    600_000,
  );
});
