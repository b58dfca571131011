// Consecutive `ip` steps of a plan run as one `ip -batch -` process on the host (issue 12: each ip
// process costs host CPU), and a failure still names the failing step. Here a stand-in `ip` on PATH
// plays `ip -batch -`; test/integration/apply-ip-batch.test.ts runs the real one.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applySteps, batchSteps, ipBatchLine } from "../../provider/src/apply";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { LINK_MARKER, markLinkStep } from "../../provider/src/link-marker";
import { argvWithCachedScripts, scriptArgv, scriptIn } from "../../provider/src/host/script";
import type { Step } from "../../provider/src/step";
import { observeCall } from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { scratchDirs } from "../support/scratch";

const scratch = scratchDirs("apply-ip-batch-");

const SRC = join(__dirname, "../../provider/src");

/** Runs argv here with a folder first on PATH, recording each command's argv. */
class LocalHost implements Host {
  readonly label = "root@local:22";
  readonly ran: (readonly string[])[] = [];
  constructor(private readonly pathFirst: string) {}
  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push(req.argv);
    const [cmd, ...args] = req.argv;
    const env = { ...process.env, PATH: `${this.pathFirst}:${process.env["PATH"] ?? ""}` };
    const r = spawnSync(cmd!, args, { input: req.stdin ?? "", encoding: "utf8", env });
    return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
}

/**
 * A folder with a stand-in `ip` that plays `ip -batch -` and a probe's `ip -d -j -batch -` (and
 * logs each run and line): a line
 * with `fails` fails as ip does (its message, then "Command failed -:LINE", exit 1, no later
 * line), one with `dies` exits 255 naming no line (as ip does on an argument it cannot parse).
 */
function fakeIp(): { bin: string; log: string } {
  const dir = scratch();
  const bin = join(dir, "bin");
  const log = join(dir, "log");
  mkdirSync(bin);
  writeFileSync(
    join(bin, "ip"),
    `#!/bin/sh
log=${JSON.stringify(log)}
echo "run: $*" >>"$log"
case "$*" in "-batch -" | "-d -j -batch -") ;; *) echo "ran alone: $*" >&2; exit 0 ;; esac
n=0
while IFS= read -r line; do
  n=$((n + 1))
  printf 'line %d: %s\\n' "$n" "$line" >>"$log"
  case $line in
    *fails*) echo "said by $n"; echo 'RTNETLINK answers: File exists' >&2
      echo "Command failed -:$n" >&2; exit 1 ;;
    *dies*) echo 'Error: argument "x" is wrong: Invalid "mtu" value' >&2; exit 255 ;;
  esac
done
`,
  );
  chmodSync(join(bin, "ip"), 0o755);
  return { bin, log };
}

const ip = (summary: string, ...words: string[]): Step => ({ summary, argv: ["ip", ...words] });

describe("batchSteps merging ip steps", () => {
  it("merges each run of two or more batchable ip steps into one command", () => {
    const batches = batchSteps([
      ip("1", "tuntap", "add", "dev", "t0", "mode", "tap"),
      markLinkStep("t0"),
      ip("3", "link", "set", "dev", "t0", "up"),
      { summary: "4", argv: ["touch", "/x"] },
      ip("5", "link", "set", "dev", "t0", "mtu", "1400"),
      { summary: "6", argv: ["touch", "/y"] },
      ip("7", "addr", "add", "fd00::1/64", "dev", "br0"),
      ip("8", "link", "set", "dev", "br0", "address", "aa:bb:cc:dd:ee:ff"),
    ]);
    expect(batches).toHaveLength(1);
    const cmds = batches[0]!;
    expect(cmds.map((c) => c.merged?.length ?? 1)).toEqual([3, 1, 1, 1, 2]);
    expect(cmds[0]!.argv).toEqual([
      "tuntap add dev t0 mode tap",
      `link set dev t0 alias ${LINK_MARKER}`,
      "link set dev t0 up",
    ]);
    expect(cmds[0]!.merged!.map((c) => c.shown)).toEqual([
      ["ip", "tuntap", "add", "dev", "t0", "mode", "tap"],
      ["ip", "link", "set", "dev", "t0", "alias", "pulumi-hypervisor"],
      ["ip", "link", "set", "dev", "t0", "up"],
    ]);
    expect(cmds[2]!.argv).toEqual(["ip", "link", "set", "dev", "t0", "mtu", "1400"]);
    expect(cmds[4]!.argv).toEqual([
      "addr add fd00::1/64 dev br0",
      "link set dev br0 address aa:bb:cc:dd:ee:ff",
    ]);
  });

  it("keeps a step its own command when a batch line could not carry it exactly", () => {
    const up = ip("up", "link", "set", "dev", "t0", "up");
    const alone: Step[] = [
      ip("global option", "-6", "route", "replace", "fd00::1/128", "dev", "t0"),
      { ...up, stdin: "x" },
      { ...up, okExitCodes: [0, 2] },
      ip("hash", "link", "set", "dev", "t0", "alias", "a#b"),
      ip("quote", "link", "set", "dev", "t0", "alias", "it's"),
      ip("double quote", "link", "set", "dev", "t0", "alias", 'say "hi"'),
      ip("backslash", "link", "set", "dev", "t0", "alias", "a\\"),
      ip("newline", "link", "set", "dev", "t0", "alias", "a\nlink del dev br0"),
      ip("tab", "link", "set", "dev", "t0", "alias", "a\tb"),
      ip("two spaces", "link", "set", "dev", "t0", "alias", "a  b"),
      ip("edge space", "link", "set", "dev", "t0", "alias", " a"),
      ip("empty", "link", "set", "dev", "t0", "alias", ""),
      ip("too many", "link", "set", "dev", "t0", ...Array.from({ length: 70 }, () => "up")),
      { summary: "script", script: scriptIn(SRC, "sysctl-probe.sh", ["a"]) },
      { summary: "file", writeFile: { path: "/x", content: "y", mode: 0o644 } },
    ];
    // each between two batchable ip steps, which therefore never meet
    const steps = alone.flatMap((s) => [up, s]);
    const cmds = batchSteps([...steps, up]).flat();
    expect(cmds.every((c) => c.merged === undefined)).toBe(true);
    expect(cmds).toHaveLength(steps.length + 1);
  });

  it("writes a word with single inner spaces in double quotes, and leaves other commands alone", () => {
    expect(ipBatchLine(["ip", "link", "set", "dev", "t0", "alias", "made by me"])).toBe(
      'link set dev t0 alias "made by me"',
    );
    expect(ipBatchLine(["ip", "link", "set", "dev", "t0", "alias", LINK_MARKER])).toBe(
      "link set dev t0 alias pulumi-hypervisor",
    );
    expect(ipBatchLine(["nft", "list", "ruleset"])).toBeUndefined();
    expect(ipBatchLine(["ip"])).toBeUndefined();
    expect(ipBatchLine(["ip", "-j", "link", "show"])).toBeUndefined();
  });
});

describe("applying merged ip steps", () => {
  it("runs a run of ip steps as one ip process, even when it is the whole plan", async () => {
    const { bin, log } = fakeIp();
    const host = new LocalHost(bin);
    await applySteps(host, [
      ip("a", "tuntap", "add", "dev", "t0", "mode", "tap"),
      markLinkStep("t0"),
      ip("c", "link", "set", "dev", "t0", "alias", "made by me"),
    ]);
    expect(host.ran).toHaveLength(1);
    expect(host.ran[0]![3]).toBe("apply-batch.sh");
    expect(readFileSync(log, "utf8")).toBe(
      [
        "run: -batch -",
        "line 1: tuntap add dev t0 mode tap",
        "line 2: link set dev t0 alias pulumi-hypervisor",
        'line 3: link set dev t0 alias "made by me"',
        "",
      ].join("\n"),
    );
  });

  it("reports the failing line as its own step: index, argv and ip's message", async () => {
    const { bin, log } = fakeIp();
    const dir = scratch();
    const host = new LocalHost(bin);
    const err = await applySteps(host, [
      ip("0", "link", "add", "name", "br0", "type", "bridge"),
      ip("1", "link", "set", "dev", "br0", "up"),
      { summary: "2", argv: ["touch", join(dir, "two")] },
      ip("3", "link", "set", "dev", "t0", "master", "br0"),
      ip("4", "link", "add", "name", "fails", "type", "bridge"),
      ip("5", "link", "set", "dev", "never", "up"),
      { summary: "6", argv: ["touch", join(dir, "six")] },
    ]).catch((e: unknown) => e);
    expect(host.ran).toHaveLength(1);
    expect(err).toBeInstanceOf(StepError);
    const e = err as StepError;
    expect([e.done, e.mayHaveRun]).toEqual([4, false]);
    const cause = e.cause as CommandError;
    expect(cause).toBeInstanceOf(CommandError);
    expect(cause.argv).toEqual(["ip", "link", "add", "name", "fails", "type", "bridge"]);
    expect([cause.exitCode, cause.stdout, cause.stderr]).toEqual([
      1,
      "said by 2\n",
      "RTNETLINK answers: File exists\n",
    ]);
    expect(cause.message).toBe(
      "root@local:22: ip link add name fails type bridge exited 1: RTNETLINK answers: File exists",
    );
    expect(existsSync(join(dir, "two"))).toBe(true);
    expect(existsSync(join(dir, "six"))).toBe(false);
    expect(readFileSync(log, "utf8")).not.toContain("never");
  });

  it("blames the run from its first step when ip names no line, saying any of it may have run", async () => {
    const { bin } = fakeIp();
    const host = new LocalHost(bin);
    const err = await applySteps(host, [
      { summary: "0", argv: ["true"] },
      ip("1", "link", "set", "dev", "t0", "up"),
      ip("2", "link", "set", "dev", "t0", "mtu", "dies"),
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepError);
    const e = err as StepError;
    expect([e.done, e.mayHaveRun]).toEqual([1, true]);
    const cause = e.cause as CommandError;
    expect(cause.message).toBe(
      `root@local:22: ip -batch - '(link set dev t0 up; link set dev t0 mtu dies)' exited 255: Error: argument "x" is wrong: Invalid "mtu" value`,
    );
  });

  it("counts steps, not commands, in a batch's name and before a failure in a later batch", async () => {
    const { bin } = fakeIp();
    const host = new LocalHost(bin);
    const err = await applySteps(host, [
      ip("0", "link", "set", "dev", "a", "up"),
      ip("1", "link", "set", "dev", "b", "up"),
      { summary: "2", argv: ["cat"], stdin: "x" },
      { summary: "3", argv: ["cat"], stdin: "y" },
      ip("4", "link", "set", "dev", "c", "up"),
      ip("5", "link", "set", "dev", "fails", "up"),
    ]).catch((e: unknown) => e);
    expect(host.ran).toHaveLength(2);
    expect((err as StepError).done).toBe(5);
    expect(((err as StepError).cause as CommandError).argv).toEqual([
      "ip",
      "link",
      "set",
      "dev",
      "fails",
      "up",
    ]);
  });

  it("hands the lines to ip as data: apply-batch.sh never reads them as shell code", async () => {
    const { bin, log } = fakeIp();
    const dir = scratch();
    const lines = [`$(touch ${join(dir, "pwned")})`, 'a\'b "c" *', "`id`; x"];
    const r = await new LocalHost(bin).run({
      argv: scriptArgv(scriptIn(SRC, "apply-batch.sh", ["ip-batch", "0", "3", ...lines])),
    });
    expect(r.exitCode).toBe(0);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
    expect(readFileSync(log, "utf8")).toBe(
      ["run: -batch -", ...lines.map((l, i) => `line ${i + 1}: ${l}`), ""].join("\n"),
    );
  });

  it("hands the lines to ip as data when a probe's ip runs them too", async () => {
    const { bin, log } = fakeIp();
    const dir = scratch();
    const lines = [`$(touch ${join(dir, "pwned")})`, 'a\'b "c" *', "`id`; x"];
    const probe = scriptArgv(
      observeCall(TapDeviceInputs.parse({ name: "t0", bridge: "b0" }), true),
    );
    const { argv, scripts } = argvWithCachedScripts(
      scriptArgv(
        scriptIn(SRC, "apply-batch.sh", [
          ...["ip-batch", "0", "3", ...lines],
          ...["probe-ip", "0", String(probe.length), ...probe],
        ]),
      ),
    );
    for (const k of scripts) writeFileSync(join(dir, k.hash), k.body);
    const r = spawnSync("/bin/sh", argv.slice(1), {
      encoding: "utf8",
      env: { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`, PULUMI_HYPERVISOR_SCRIPTS: dir },
    });
    expect(r.status).toBe(0);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
    // one ip: the lines as they came, then the probe's (the routes via t0, which does not exist
    // here: none; t0 asked for as one the lines made)
    expect(readFileSync(log, "utf8")).toBe(
      [
        "run: -d -j -batch -",
        ...lines.map((l, i) => `line ${i + 1}: ${l}`),
        "line 4: route show table all dev t0",
        "line 5: link show dev t0",
        "",
      ].join("\n"),
    );
    // the step's marks, then the probe's, its exit code last
    expect(r.stderr).toMatch(
      /^@@pulumi-hypervisor-step 0\n@@pulumi-hypervisor-probe 1\n[^]*\n@@pulumi-hypervisor-probed 1 0\n$/,
    );
  });

  it("keeps the lines as they are when a remote shell swaps script bodies for references", () => {
    const script = scriptArgv(scriptIn(SRC, "sysctl-probe.sh", ["a"]));
    const batch = (kind: string) =>
      scriptArgv(scriptIn(SRC, "apply-batch.sh", [kind, "0", String(script.length), ...script]));
    // the same words as a command are a script to refer to, as ip-batch lines data to keep
    expect(argvWithCachedScripts(batch("0")).scripts).toHaveLength(2);
    const { argv, scripts } = argvWithCachedScripts(batch("ip-batch"));
    expect(scripts).toHaveLength(1);
    expect(argv.slice(4)).toEqual(["ip-batch", "0", String(script.length), ...script]);
  });
});
