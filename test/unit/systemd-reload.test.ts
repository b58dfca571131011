// persist/systemd-reload.sh on this machine's shell, with a stand-in `systemctl` on PATH that
// logs when each reload starts and ends: operations that reach the step while a reload runs share
// the next one, and none returns before a reload that began after it started has ended.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scriptBody } from "../../provider/src/host/script";

const dir = mkdtempSync(join(tmpdir(), "systemd-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

writeFileSync(join(dir, "systemd-reload.sh"), scriptBody("persist/systemd-reload.sh"));
// The stand-in: `daemon-reload` takes 0.3 s; FAIL=N makes the Nth reload fail.
writeFileSync(
  join(dir, "systemctl"),
  [
    "#!/bin/sh",
    '[ "$1" = daemon-reload ] || exit 64',
    `n=$(( $(cat ${dir}/n 2>/dev/null || echo 0) + 1 ))`,
    `echo $n > ${dir}/n`,
    `echo "reload $n start $(date +%s%N)" >> ${dir}/log`,
    "sleep 0.3",
    `echo "reload $n end $(date +%s%N)" >> ${dir}/log`,
    '[ "$n" != "${FAIL-}" ]',
  ].join("\n"),
  { mode: 0o755 },
);

interface Span {
  start: number;
  end: number;
}

/**
 * Runs `driver` (sh, with $STEP the script and $LOG the log) in a mount namespace of its own with
 * a fresh /run/pulumi-hypervisor, so the count starts at zero and the machine's stays untouched.
 * Returns the reloads and the steps' spans (lines "step I start|end|rc T" from the driver).
 */
function run(
  driver: string,
  env: Record<string, string> = {},
): { reloads: Span[]; steps: Map<string, Span & { rc: number }> } {
  rmSync(join(dir, "log"), { force: true });
  rmSync(join(dir, "n"), { force: true });
  const r = spawnSync(
    "unshare",
    [
      "--mount",
      "sh",
      "-c",
      // a line of its own: `a && b && (x) & (y) &` would mount in the background
      "mkdir -p /run/pulumi-hypervisor && mount -t tmpfs none /run/pulumi-hypervisor || exit 1\n" +
        driver,
    ],
    {
      encoding: "utf8",
      timeout: 30_000,
      env: {
        ...process.env,
        ...env,
        PATH: `${dir}:${process.env["PATH"] ?? ""}`,
        STEP: join(dir, "systemd-reload.sh"),
        LOG: join(dir, "log"),
      },
    },
  );
  expect(r.status, r.stderr).toBe(0);
  const lines = readFileSync(join(dir, "log"), "utf8").split("\n");
  const reloads = new Map<string, Span>();
  const steps = new Map<string, Span & { rc: number }>();
  for (const l of lines) {
    const m = /^(reload|step) (\S+) (start|end|rc) (\d+)$/.exec(l);
    if (!m) continue;
    const [, kind = "", id = "", what = "", v = "0"] = m;
    const map: Map<string, Span & { rc?: number }> = kind === "reload" ? reloads : steps;
    const span = map.get(id) ?? { start: 0, end: 0, rc: -1 };
    if (what === "rc") span.rc = Number(v);
    else span[what as "start" | "end"] = Number(v);
    map.set(id, span);
  }
  return { reloads: [...reloads.values()], steps };
}

// One step, as the driver starts it: its start, its exit code, its end.
const step = (i: number): string =>
  `( echo "step ${i} start $(date +%s%N)" >> "$LOG"; sh "$STEP"; echo "step ${i} rc $?" >> "$LOG"; echo "step ${i} end $(date +%s%N)" >> "$LOG" )`;

/** Whether a reload that began after the step began ended (well) before the step did. */
function covered(s: Span, reloads: readonly Span[]): boolean {
  return reloads.some((r) => r.start >= s.start && r.end <= s.end);
}

describe("systemd-reload.sh", () => {
  it("six steps at once share a reload or two, each after a reload that began after it", () => {
    const all = [1, 2, 3, 4, 5, 6].map((i) => `${step(i)} &`).join(" ");
    const { reloads, steps } = run(`${all} wait`);
    expect(steps.size).toBe(6);
    for (const s of steps.values()) {
      expect(s.rc).toBe(0);
      expect(covered(s, reloads)).toBe(true);
    }
    // The first reload covers the steps that read the count before it began; those that read it
    // in the moment between its count and its start share a second; only a step that started
    // after the first reload began (a machine slow to start processes) may need another.
    const first = Math.min(...reloads.map((r) => r.start));
    const late = [...steps.values()].filter((s) => s.start > first).length;
    expect(reloads.length).toBeGreaterThanOrEqual(1);
    expect(reloads.length).toBeLessThanOrEqual(2 + late);
  });

  it("a step that starts while a reload runs waits for the next one", () => {
    // the second starts once the first's reload has begun, which may have read its files too early
    const begun =
      'n=0; until grep -q "^reload 1 start" "$LOG" 2>/dev/null || [ $n -gt 500 ]; do sleep 0.01; n=$((n + 1)); done';
    const { reloads, steps } = run(`${step(1)} & ${begun}; ${step(2)} & wait`);
    expect(reloads).toHaveLength(2);
    for (const s of steps.values()) expect(covered(s, reloads)).toBe(true);
  });

  it("steps one after another reload each time", () => {
    const { reloads, steps } = run(`${step(1)}; ${step(2)}; ${step(3)}`);
    expect(reloads).toHaveLength(3);
    expect([...steps.values()].map((s) => s.rc)).toEqual([0, 0, 0]);
  });

  it("a failed reload fails its step, and the steps that waited on it reload themselves", () => {
    // five at once: the first reload fails; those that read the count before it began must not
    // take it for theirs
    const all = [1, 2, 3, 4, 5].map((i) => `${step(i)} &`).join(" ");
    const { reloads, steps } = run(`${all} wait`, { FAIL: "1" });
    const failed = [...steps.values()].filter((s) => s.rc !== 0);
    expect(failed).toHaveLength(1);
    const good = reloads.slice(1);
    expect(good.length).toBeGreaterThanOrEqual(1);
    for (const s of steps.values()) {
      if (s.rc === 0) expect(covered(s, good)).toBe(true);
    }
  });
});
