import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applySteps, batchSteps } from "../../provider/src/apply";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { scriptIn } from "../../provider/src/host/script";
import { sysctlCall } from "../../provider/src/sysctl";
import { scratchDirs } from "../support/scratch";

const scratch = scratchDirs("apply-");

const SRC_QEMU = join(__dirname, "../../provider/src/resources/qemu-guest");

/** Runs argv on this machine with /bin/sh semantics, counting round trips. */
class LocalHost implements Host {
  readonly label = "root@local:22";
  calls = 0;
  async run(req: RunRequest): Promise<RunResult> {
    this.calls++;
    const [cmd, ...args] = req.argv;
    const r = spawnSync(cmd!, args, { input: req.stdin ?? "", encoding: "utf8" });
    const result = { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    if (req.reject !== false && !(req.okExitCodes ?? [0]).includes(result.exitCode)) {
      throw new CommandError(this.label, req.argv, result);
    }
    return result;
  }
}

describe("applySteps", () => {
  it("runs a plan in one round trip, stdin reaching only the step that has it", async () => {
    const dir = scratch();
    const host = new LocalHost();
    await applySteps(host, [
      { summary: "a", argv: ["sh", "-c", 'cat > "$1"', "sh", join(dir, "a")] },
      { summary: "b", argv: ["sh", "-c", "exit 3"], okExitCodes: [0, 3] },
      {
        summary: "f",
        writeFile: { path: join(dir, "sub", "f.conf"), content: "x=1\n", mode: 0o640 },
      },
      { summary: "after", argv: ["sh", "-c", 'cat > "$1"', "sh", join(dir, "after")] },
    ]);
    expect(readFileSync(join(dir, "after"), "utf8")).toBe("");
    expect(host.calls).toBe(1);
    expect(readFileSync(join(dir, "a"), "utf8")).toBe("");
    expect(readFileSync(join(dir, "sub", "f.conf"), "utf8")).toBe("x=1\n");
    expect(statSync(join(dir, "sub", "f.conf")).mode & 0o777).toBe(0o640);
    expect(statSync(join(dir, "sub")).mode & 0o777).toBe(0o755);
  });

  it("reports the failing step's own command, exit code and stderr, and how many completed", async () => {
    const dir = scratch();
    const host = new LocalHost();
    const err = await applySteps(host, [
      { summary: "ok", argv: ["touch", join(dir, "one")] },
      {
        summary: "bad",
        argv: ["sh", "-c", "echo out; echo 'RTNETLINK answers: File exists' >&2; exit 2", "it's"],
      },
      { summary: "never", argv: ["touch", join(dir, "three")] },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepError);
    const e = err as StepError;
    expect(e.done).toBe(1);
    expect(e.cause).toBeInstanceOf(CommandError);
    expect((e.cause as CommandError).message).toBe(
      `root@local:22: sh -c 'echo out; echo '\\''RTNETLINK answers: File exists'\\'' >&2; exit 2' 'it'\\''s' exited 2: RTNETLINK answers: File exists`,
    );
    expect((e.cause as CommandError).stdout).toBe("out\n");
    expect(host.calls).toBe(1);
    expect(() => statSync(join(dir, "three"))).toThrow();
  });

  it("passes every word of a batched command intact, and names a failing script rather than quoting its body", async () => {
    const dir = scratch();
    const host = new LocalHost();
    const words = ["a'b", "", "x\ny", "$(touch pwned)", "*", '"q"'];
    const existing = join(dir, "disk.img");
    mkdirSync(join(dir, "proc/net/ipv4"), { recursive: true });
    writeFileSync(join(dir, "proc/net/ipv4/ip_forward"), "0\n");
    const err = await applySteps(host, [
      {
        summary: "words",
        argv: ["sh", "-c", 'printf "%s|" "$@" > "$0"', join(dir, "w"), ...words],
      },
      {
        summary: "claim",
        script: sysctlCall("claim", "net/ipv4/ip_forward", "natrule-a", "1", {
          proc: join(dir, "proc"),
          claims: join(dir, "claims"),
        }),
      },
      { summary: "touch", argv: ["touch", existing] },
      {
        summary: "disk",
        script: scriptIn(SRC_QEMU, "qemu-create-disk.sh", [existing, "raw", "1G"]),
      },
    ]).catch((e: unknown) => e);
    expect(readFileSync(join(dir, "w"), "utf8")).toBe(words.map((w) => `${w}|`).join(""));
    expect(() => statSync(join(dir, "pwned"))).toThrow();
    expect(readFileSync(join(dir, "proc/net/ipv4/ip_forward"), "utf8")).toBe("1\n");
    expect(host.calls).toBe(1);
    expect(err).toBeInstanceOf(StepError);
    expect((err as StepError).done).toBe(3);
    expect((err as StepError).message).toBe(
      `root@local:22: sh qemu-create-disk.sh ${existing} raw 1G exited 1: ${existing} appeared since it was observed; not overwriting it`,
    );
  });

  it("starts a new batch only when a second step has stdin", () => {
    const batches = batchSteps([
      { summary: "1", argv: ["true"] },
      { summary: "2", argv: ["nft", "-f", "-"], stdin: "table ip t {}\n" },
      { summary: "3", argv: ["true"] },
      { summary: "4", writeFile: { path: "/x", content: "y", mode: 0o644 } },
    ]);
    expect(batches.map((b) => b.length)).toEqual([3, 1]);
  });
});
