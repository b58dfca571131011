// What applying a plan leaves behind and shows when a command fails or its session is lost.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applySteps } from "../../provider/src/apply";
import { CommandError, SshConnectionError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { writeFile } from "../../provider/src/host/host";
import { runScript, scriptIn } from "../../provider/src/host/script";
import { sysctlCall } from "../../provider/src/sysctl";
import { scratchDirs } from "../support/scratch";

const scratch = scratchDirs("apply-faults-");

/** Runs argv here with extra directories first on PATH (to put failing tools in the way). */
class LocalHost implements Host {
  readonly label = "root@local:22";
  constructor(private readonly pathFirst = "") {}
  async run(req: RunRequest): Promise<RunResult> {
    const [cmd, ...args] = req.argv;
    const env = { ...process.env, PATH: `${this.pathFirst}:${process.env["PATH"] ?? ""}` };
    const r = spawnSync(cmd!, args, { input: req.stdin ?? "", encoding: "utf8", env });
    const result = { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    if (req.reject !== false && !(req.okExitCodes ?? [0]).includes(result.exitCode)) {
      throw new CommandError(this.label, req.argv, result);
    }
    return result;
  }
}

/** Records what each run asked to be shown as, and answers as a lost session would. */
class LostHost implements Host {
  readonly label = "root@lost:22";
  shown: Array<readonly string[] | undefined> = [];
  async run(req: RunRequest): Promise<RunResult> {
    this.shown.push(req.shown);
    const shown = (req.shown ?? req.argv).join(" ");
    throw new SshConnectionError(
      this.label,
      "lost",
      `${this.label}: connection lost while running ${shown}`,
    );
  }
}

describe("writing a file that fails", () => {
  it("removes its temp file when a step after creating it fails", async () => {
    const dir = scratch();
    const bin = join(dir, "bin");
    mkdirSync(bin);
    writeFileSync(
      join(bin, "chmod"),
      "#!/bin/sh\necho 'chmod: No space left on device' >&2\nexit 1\n",
    );
    chmodSync(join(bin, "chmod"), 0o755);
    const target = join(dir, "etc", "x.conf");
    const err = await applySteps(new LocalHost(bin), [
      { summary: "write x.conf", writeFile: { path: target, content: "secret=1\n", mode: 0o600 } },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepError);
    expect(String(err)).toContain("No space left on device");
    expect((err as StepError).mayHaveRun).toBe(false);
    expect(readdirSync(join(dir, "etc"))).toEqual([]);
    const direct = await writeFile(new LocalHost(bin), target, "y\n").catch((e: unknown) => e);
    expect(direct).toBeInstanceOf(CommandError);
    expect(readdirSync(join(dir, "etc"))).toEqual([]);
  });
});

describe("a session lost mid-apply", () => {
  it("names the step's script and arguments, never its body, and says the step may have run", async () => {
    const host = new LostHost();
    const claim = sysctlCall("claim", "net/ipv4/ip_forward", "natrule-x", "1");
    const one = await applySteps(host, [{ summary: "claim", script: claim }]).catch(
      (e: unknown) => e,
    );
    const two = await applySteps(host, [
      { summary: "claim", script: claim },
      { summary: "touch", argv: ["touch", "/run/x"] },
    ]).catch((e: unknown) => e);
    await runScript(
      host,
      scriptIn(join(__dirname, "../../provider/src"), "sysctl-probe.sh", ["a"]),
    ).catch(() => undefined);
    expect(host.shown).toEqual([
      ["sh", "sysctl-claim.sh", "claim", "net/ipv4/ip_forward", "natrule-x", "1"],
      ["sh", "apply-batch.sh", "(2 steps)"],
      ["sh", "sysctl-probe.sh", "a"],
    ]);
    expect(String(one)).not.toContain("flock");
    // The claim may have run: the caller records the object instead of forgetting it.
    expect((one as StepError).mayHaveRun).toBe(true);
    expect(String(two)).not.toContain("flock");
  });
});
