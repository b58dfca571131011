// The dead-man timer: its restore script runs in a real shell, and a guarded plan is confirmed
// only over a new login; a failed command restores at once; a host that already rolled back fails.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyGuarded, type ApplySteps } from "../../provider/src/deadman/apply-guarded";
import {
  armStep,
  confirmStep,
  guarded,
  renderRestoreScript,
  type Guard,
} from "../../provider/src/deadman/deadman";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { scriptDisplayArgv } from "../../provider/src/host/script";
import type { Step } from "../../provider/src/step";

const dir = mkdtempSync(join(tmpdir(), "hv-deadman-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const guard: Guard = {
  id: "bridge-br0",
  seconds: 30,
  reason: "eth0 carries this SSH session",
  restore: [{ summary: "put eth0 back", argv: ["ip", "link", "set", "dev", "eth0", "nomaster"] }],
  files: ["/etc/network/interfaces.d/eth0"],
};

describe("renderRestoreScript", () => {
  it("runs every step even after a failure, data never executed", () => {
    const hostile = `it's $(touch ${dir}/pwned) \`x\`\n`;
    const script = renderRestoreScript("test", [
      { summary: "fails", argv: ["sh", "-c", "exit 5"] },
      { summary: "writes", writeFile: { path: join(dir, "f"), content: hostile, mode: 0o600 } },
    ]);
    for (const shell of ["sh", "dash"]) {
      const r = spawnSync(shell, ["-c", script], { encoding: "utf8" });
      expect(r.stderr).toBe("failed: fails\n");
      expect(readFileSync(join(dir, "f"), "utf8")).toBe(hostile);
    }
    expect(spawnSync("test", ["-e", join(dir, "pwned")]).status).toBe(1);
  });
});

describe("guarded steps", () => {
  it("arm the timer with the restore script on stdin and confirm it last", () => {
    const change: Step = {
      summary: "enslave eth0",
      argv: ["ip", "link", "set", "eth0", "master", "br0"],
    };
    const steps = guarded(guard, [change]);
    expect(steps.map((s) => ("script" in s ? scriptDisplayArgv(s.script) : s.summary))).toEqual([
      ["sh", "deadman-arm.sh", "bridge-br0", "30", "/etc/network/interfaces.d/eth0"],
      "enslave eth0",
      ["sh", "deadman-end.sh", "confirm", "bridge-br0"],
    ]);
    expect(armStep(guard).summary).toBe(
      "arm a dead-man timer: unless a new SSH login confirms the change within 30s, the host restores its previous network configuration by itself (eth0 carries this SSH session)",
    );
    expect("stdin" in steps[0]! ? steps[0].stdin : "").toContain(
      "ip link set dev eth0 nomaster </dev/null; rc=$?; case $rc in 0) ;; *) failed 'put eth0 back' $rc ;; esac\n",
    );
  });
});

// A host whose pooled runs and new logins are recorded separately.
function fakeHost(fresh: (req: RunRequest) => Promise<RunResult>): Host & { log: string[] } {
  const log: string[] = [];
  return {
    label: "root@h:22",
    log,
    run: (req) => {
      log.push(`pooled ${req.argv[3] ?? req.argv[0]}`);
      return Promise.resolve({ exitCode: 0, stdout: "", stderr: "" });
    },
    runFresh: (req) => {
      log.push(`fresh ${req.argv[3] ?? req.argv[0]}`);
      return fresh(req);
    },
  };
}

const applyEach =
  (fail?: string): ApplySteps =>
  async (host, steps) => {
    for (const [i, s] of steps.entries()) {
      if (s.summary === fail) {
        throw new StepError(
          i,
          new CommandError(host.label, ["ip"], { exitCode: 2, stdout: "", stderr: "busy" }),
        );
      }
      await host.run({
        argv: "script" in s ? ["sh", "-c", "", s.script.name] : ["x", "", "", s.summary],
      });
    }
  };

describe("applyGuarded", () => {
  const change: Step = { summary: "enslave eth0", argv: ["ip"] };
  const after: Step = { summary: "record ports", argv: ["ip"] };
  const steps = [...guarded(guard, [change]), after];

  it("confirms over a new login, then applies the rest", async () => {
    const host = fakeHost(() => Promise.resolve({ exitCode: 0, stdout: "", stderr: "" }));
    expect(await applyGuarded(host, steps, applyEach())).toBe(true);
    expect(host.log).toEqual([
      "pooled deadman/deadman-arm.sh",
      "pooled enslave eth0",
      "fresh deadman-end.sh",
      "pooled record ports",
    ]);
  });

  it("fails saying the host rolled back when the timer had fired", async () => {
    const host = fakeHost(() => Promise.resolve({ exitCode: 3, stdout: "", stderr: "" }));
    await expect(applyGuarded(host, steps, applyEach())).rejects.toThrow(
      "the host rolled back to its previous network configuration by itself: the dead-man timer bridge-br0 fired before a new login confirmed the change (30s)",
    );
  });

  it("restores at once when a command of the change fails", async () => {
    const host = fakeHost(() => Promise.resolve({ exitCode: 0, stdout: "", stderr: "" }));
    await expect(applyGuarded(host, steps, applyEach("enslave eth0"))).rejects.toThrow(
      "root@h:22: ip exited 2: busy; the host was restored to its configuration from before the change",
    );
    expect(host.log).toEqual(["pooled deadman/deadman-arm.sh", "pooled deadman/deadman-end.sh"]);
  });

  it("leaves plans without a timer to the plain apply", async () => {
    const host = fakeHost(() => Promise.resolve({ exitCode: 0, stdout: "", stderr: "" }));
    expect(await applyGuarded(host, [change, confirmStep(guard)], applyEach())).toBe(false);
    expect(host.log).toEqual([]);
  });
});
