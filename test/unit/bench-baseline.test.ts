// The bench's baseline mode (bench/baseline.ts): where its build is kept, how it reaches today's
// dependencies but its own provider, and the error when its commit cannot be had.
import { mkdirSync, mkdtempSync, readlinkSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { baselineDir, linkDependencies, prepareBaseline } from "../../bench/baseline";
import { BASELINE_COMMIT } from "../../bench/report";

const dir = mkdtempSync(path.join(tmpdir(), "bench-baseline-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("bench baseline", () => {
  it("is kept in node_modules/.cache, named by its commit", () => {
    expect(baselineDir("/repo")).toBe(
      `/repo/node_modules/.cache/pulumi-hypervisor-bench/${BASELINE_COMMIT.slice(0, 12)}`,
    );
  });

  it("links today's packages, but its own copy as pulumi-hypervisor", () => {
    const from = path.join(dir, "today", "node_modules");
    for (const p of ["zod", "ssh2", "@pulumi", ".bin", ".cache", "pulumi-hypervisor"]) {
      mkdirSync(path.join(from, p), { recursive: true });
    }
    writeFileSync(path.join(from, ".package-lock.json"), "{}");
    const to = path.join(dir, "baseline", "node_modules");
    linkDependencies(from, to);
    expect(readdirSync(to).sort()).toEqual(
      [".bin", "@pulumi", "pulumi-hypervisor", "ssh2", "zod"].sort(),
    );
    expect(readlinkSync(path.join(to, "zod"))).toBe(path.join(from, "zod"));
    // the plugin started in the baseline's directory loads the baseline's provider
    expect(readlinkSync(path.join(to, "pulumi-hypervisor"))).toBe("..");
  });

  it("names the fix when its commit is not in the repository", () => {
    const notARepo = path.join(dir, "not-a-repo");
    mkdirSync(notARepo);
    const logged: string[] = [];
    expect(() => prepareBaseline((l) => logged.push(l), notARepo)).toThrow(
      new RegExp(
        `bench: the baseline code \\(commit ${BASELINE_COMMIT.slice(0, 12)}, .*\\) .*, or leave ` +
          "it out with --modes pooled,per-command",
      ),
    );
    // nothing was built
    expect(logged).toEqual([]);
    expect(readdirSync(notARepo)).toEqual([]);
  });
});
