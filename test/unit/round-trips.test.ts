// Round trips per operation (issue 12): create, update and delete are two remote commands (observe;
// apply with the observation after it), a read is one, and read-only observations asked of one
// host at once share one command, each failing or succeeding on its own.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applySteps, probeBatchArgv, unitsWords } from "../../provider/src/apply";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { fakeBridgeProbe } from "../support/fake-bridge";
import { Lifecycle } from "../../provider/src/lifecycle";
import {
  argvWithCachedScripts,
  argvWithCompactScripts,
  scriptArgv,
  scriptIn,
} from "../../provider/src/host/script";
import { buildRemoteCommand, newSudoMarks } from "../../provider/src/host/sudo";
import { MAX_BATCH_BYTES, runProbeCoalesced } from "../../provider/src/observe-batch";
import {
  probeOutput,
  type ObserveContext,
  type ProbeCommand,
  type ProbeUnits,
} from "../../provider/src/resource";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { scratchDirs } from "../support/scratch";

const tmp = scratchDirs("round-trips-");

const SRC = join(__dirname, "../../provider/src");

function spawn(
  argv: readonly string[],
  stdin: string | Buffer | undefined,
  env: NodeJS.ProcessEnv = process.env,
): RunResult {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd!, args, { input: stdin ?? "", encoding: "utf8", env });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs every command here with sh, counting them: one run is one round trip. */
class LocalHost implements Host {
  readonly label = "root@local:22";
  readonly ran: (readonly string[])[] = [];
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}
  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push(req.argv);
    const r = spawn(req.argv, req.stdin, this.env);
    if (req.reject !== false && !(req.okExitCodes ?? [0]).includes(r.exitCode)) {
      throw new CommandError(this.label, req.argv, r);
    }
    return r;
  }
}

/** A probe-like command that prints `out` and `err` (no final newline) and exits `code`. */
function command(name: string, out: string, err = "", code = 0): ProbeCommand {
  return {
    argv: ["sh", "-c", 'printf %s "$1"; printf %s "$2" >&2; exit "$3"', name, out, err, `${code}`],
    shown: ["sh", `${name}.sh`],
  };
}

describe("apply with the observation after it", () => {
  it("runs the steps and the probe in one command and returns the probe's own output", async () => {
    const host = new LocalHost();
    const r = await applySteps(
      host,
      [
        { summary: "one", argv: ["echo", "step one"] },
        { summary: "two", argv: ["sh", "-c", "echo noise >&2"] },
      ],
      command("probe", "links\n[]", "a warning"),
    );
    expect(host.ran.length).toBe(1);
    expect(r).toEqual({ exitCode: 0, stdout: "links\n[]", stderr: "a warning" });
  });

  it("takes a single step into the same command too", async () => {
    const host = new LocalHost();
    const r = await applySteps(
      host,
      [{ summary: "write", writeFile: { path: join(tmp(), "f"), content: "x\n", mode: 0o644 } }],
      command("probe", "after\n"),
    );
    expect(host.ran.length).toBe(1);
    expect(r?.stdout).toBe("after\n");
  });

  it("reports a failing step as before (its command, exit code, output) and runs no probe", async () => {
    const host = new LocalHost();
    const dir = tmp();
    const probe: ProbeCommand = {
      argv: ["sh", "-c", 'touch "$1"', "probe", join(dir, "probed")],
      shown: ["sh", "probe.sh"],
    };
    const err = await applySteps(
      host,
      [
        { summary: "ok", argv: ["true"] },
        {
          summary: "bad",
          argv: ["sh", "-c", "echo half; echo 'RTNETLINK answers: busy' >&2; exit 2"],
        },
        { summary: "never", argv: ["touch", join(dir, "never")] },
      ],
      probe,
    ).catch((e: unknown) => e);
    expect(host.ran.length).toBe(1);
    expect(err).toBeInstanceOf(StepError);
    expect((err as StepError).done).toBe(1);
    const cause = (err as StepError).cause as CommandError;
    expect(cause).toBeInstanceOf(CommandError);
    expect(cause.argv).toEqual([
      "sh",
      "-c",
      "echo half; echo 'RTNETLINK answers: busy' >&2; exit 2",
    ]);
    expect([cause.exitCode, cause.stdout, cause.stderr]).toEqual([
      2,
      "half\n",
      "RTNETLINK answers: busy\n",
    ]);
    expect(existsSync(join(dir, "never"))).toBe(false);
    expect(existsSync(join(dir, "probed"))).toBe(false);
  });

  it("returns a failing probe's exit code and output; probeOutput throws what running it alone throws", async () => {
    const host = new LocalHost();
    const probe = command("probe", "partial", "ip: cannot allocate memory", 3);
    const r = await applySteps(host, [{ summary: "ok", argv: ["true"] }], probe);
    expect(r).toEqual({ exitCode: 3, stdout: "partial", stderr: "ip: cannot allocate memory" });
    const alone = spawn(probe.argv, undefined);
    expect(() => probeOutput(host.label, probe, r!)).toThrow(
      new CommandError(host.label, probe.shown, alone),
    );
  });

  it("keeps the stdin rule: a probe with stdin after a step with stdin runs on its own", async () => {
    const host = new LocalHost();
    const r = await applySteps(host, [{ summary: "cat", argv: ["cat"], stdin: "data" }], {
      ...command("probe", "x"),
      stdin: "more",
    });
    expect(r).toBeUndefined();
    expect(host.ran.length).toBe(1);
  });
});

// The CPUs a host has online, in the kernel's format: apply-batch.sh runs a batch's probes side by
// side only on more than two (PULUMI_HYPERVISOR_CPUS_ONLINE stands in for the kernel's list).
const cpus = (online: string): NodeJS.ProcessEnv => ({
  ...process.env,
  PULUMI_HYPERVISOR_CPUS_ONLINE: online,
});

/**
 * Asks three observations of the host at once, the middle one `middle`; checks that they shared
 * one command and that the other two got their own output, and returns the middle one's error.
 */
async function middleFails(host: LocalHost, middle: ProbeCommand): Promise<CommandError> {
  const settled = await Promise.allSettled([
    runProbeCoalesced(host, command("a", "a\n", "warn a")),
    runProbeCoalesced(host, middle),
    runProbeCoalesced(host, command("c", "c")),
  ]);
  expect(host.ran.length).toBe(1);
  expect(settled[0]).toEqual({
    status: "fulfilled",
    value: { exitCode: 0, stdout: "a\n", stderr: "warn a" },
  });
  expect(settled[2]).toEqual({
    status: "fulfilled",
    value: { exitCode: 0, stdout: "c", stderr: "" },
  });
  expect(settled[1]?.status).toBe("rejected");
  const reason = (settled[1] as PromiseRejectedResult).reason as CommandError;
  expect(reason).toBeInstanceOf(CommandError);
  return reason;
}

describe("read-only observations asked at once of one host", () => {
  it.each(["0-1", "0-7"])(
    "travel in one command, each caller getting its own output (CPUs %s)",
    async (online) => {
      const host = new LocalHost(cpus(online));
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          runProbeCoalesced(host, command(`p${i}`, `out ${i}\nline`, `err ${i}`)),
        ),
      );
      expect(host.ran.length).toBe(1);
      expect(results).toEqual(
        Array.from({ length: 10 }, (_, i) => ({
          exitCode: 0,
          stdout: `out ${i}\nline`,
          stderr: `err ${i}`,
        })),
      );
    },
  );

  it.each(["0-1", "0-7"])(
    "fail only the caller whose probe failed, with the error it would get alone (CPUs %s)",
    async (online) => {
      const host = new LocalHost(cpus(online));
      const bad = command("bad", "", "nft: permission denied", 1);
      const settled = await Promise.allSettled([
        runProbeCoalesced(host, command("a", "a")),
        runProbeCoalesced(host, bad),
        runProbeCoalesced(host, command("c", "c")),
      ]);
      expect(host.ran.length).toBe(1);
      expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      const alone = await runProbeCoalesced(new LocalHost(), bad).catch((e: unknown) => e);
      expect(alone).toBeInstanceOf(CommandError);
      expect((settled[1] as PromiseRejectedResult).reason).toEqual(alone);
      expect(String((settled[1] as PromiseRejectedResult).reason)).toContain("sh bad.sh");
    },
  );

  it("run side by side on the host: the command takes as long as the slowest, in order", async () => {
    const scratch = tmp();
    const host = new LocalHost({ ...cpus("0-7"), TMPDIR: scratch });
    const slow = (i: number): ProbeCommand => ({
      argv: ["sh", "-c", 'sleep 1; printf "%s" "$1"; exit "$2"', "slow", `out ${i}`, `${i % 2}`],
      shown: ["sh", "slow.sh"],
    });
    const t0 = Date.now();
    const settled = await Promise.allSettled(
      [0, 1, 2, 3].map((i) => runProbeCoalesced(host, slow(i))),
    );
    const ms = Date.now() - t0;
    expect(host.ran.length).toBe(1);
    expect(ms).toBeLessThan(3000);
    expect(settled.map((s) => (s.status === "fulfilled" ? s.value.stdout : "failed"))).toEqual([
      "out 0",
      "failed",
      "out 2",
      "failed",
    ]);
    // the folder the probes wrote to is gone
    expect(readdirSync(scratch)).toEqual([]);
  });

  it("run side by side, a probe killed before its exit code fails alone, with 255", async () => {
    const host = new LocalHost(cpus("0-7"));
    // the probe kills the subshell that runs it (its parent), which would write its exit code
    const killed: ProbeCommand = {
      argv: ["sh", "-c", 'printf "%s" half; kill -9 "$PPID"', "killed"],
      shown: ["sh", "killed.sh"],
    };
    const reason = await middleFails(host, killed);
    expect([reason.exitCode, reason.stdout]).toEqual([255, "half"]);
  });

  // Runs three probes at once with spies for the processes only probes run side by side need
  // (their folder, its removal and the printing of their files); checks each caller's result and
  // which of those processes started.
  async function sideBySide(online: string | undefined, side: boolean): Promise<void> {
    // spies for the processes only probes run side by side need: their folder, its removal and
    // the printing of their files
    const scratch = tmp();
    const bin = join(scratch, "bin");
    const log = join(scratch, "started");
    mkdirSync(bin);
    for (const name of ["mktemp", "cat", "rm"]) {
      const spy = join(bin, name);
      writeFileSync(
        spy,
        `#!/bin/sh\necho ${name} >>"$SPY_LOG"\nPATH=\${PATH#*:} exec ${name} "$@"\n`,
      );
      chmodSync(spy, 0o755);
    }
    const host = new LocalHost({
      ...(online === undefined ? process.env : cpus(online)),
      PATH: `${bin}:${process.env.PATH ?? ""}`,
      SPY_LOG: log,
      TMPDIR: scratch,
    });
    const reason = await middleFails(host, command("bad", "half", "no", 3));
    expect([reason.exitCode, reason.stdout, reason.stderr]).toEqual([3, "half", "no"]);
    const started = existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
    expect(started.sort()).toEqual(side ? ["cat", "cat", "mktemp", "rm"] : []);
    // nothing is left in the temporary folder either way
    expect(readdirSync(scratch).sort()).toEqual(side ? ["bin", "started"] : ["bin"]);
  }

  it.each([
    ["0-1", false],
    ["0", false],
    ["0-2", true],
    ["0-1,4", true],
    // not the kernel's format: unknown, so side by side as on a large host
    ["08", true],
    ["x", true],
  ] as const)(
    "run one after the other on a host with at most two CPUs, side by side otherwise (CPUs %s)",
    (online, side) => sideBySide(online, side),
  );

  it("take the host's CPUs from the kernel's list when nothing stands in for it", async () => {
    const online = readFileSync("/sys/devices/system/cpu/online", "utf8").trim();
    const count = online
      .split(",")
      .map((r) => r.split("-").map(Number))
      .reduce((n, [a = 0, b = a]) => n + b - a + 1, 0);
    await sideBySide(undefined, count > 2);
  });

  it("run a lone probe as itself, and a cancelled caller fails alone", async () => {
    const host = new LocalHost();
    const probe = command("lone", "x");
    expect((await runProbeCoalesced(host, probe)).stdout).toBe("x");
    expect(host.ran).toEqual([probe.argv]);
    const cancel = new AbortController();
    const a = runProbeCoalesced(host, command("a", "a"), cancel.signal);
    const b = runProbeCoalesced(host, command("b", "b"));
    cancel.abort(new Error("cancelled by the engine"));
    await expect(a).rejects.toThrow("cancelled by the engine");
    expect((await b).stdout).toBe("b");
  });
});

const conn = {
  host: "198.18.1.2",
  privateKey: "KEY",
  hostKey: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
};

/**
 * A host with one bridge that answers commands as `ip` would; apply batches run the real
 * apply-batch.sh here, with each inner command replaced by one printing the fake host's answer,
 * so markers, exit codes and the splitting of the output are the provider's own.
 */
class BridgeHost implements Host {
  readonly label = "root@198.18.1.2:22";
  readonly ran: string[] = [];
  readonly argvs: string[][] = [];
  private mtu: number | undefined;
  private alias: string | undefined;

  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push(req.argv[3] ?? req.argv[0] ?? "");
    this.argvs.push([...req.argv]);
    if (req.argv[3] !== "apply-batch.sh") return this.answer(req.argv);
    const params = req.argv.slice(4);
    const replaced: string[] = [];
    let failed = false;
    for (let i = 0; i < params.length;) {
      const [ok = "", stdin = "", n = "0"] = params.slice(i, i + 3);
      const words = params.slice(i + 3, i + 3 + Number(n));
      i += 3 + Number(n);
      // the probes' systemd units: the batch's own shell asks (nothing here, without systemd)
      if (ok === "units") {
        replaced.push(ok, stdin, n, ...words);
        continue;
      }
      const r = failed
        ? { exitCode: 0, stdout: "", stderr: "" }
        : ok === "ip-batch"
          ? this.batch(words)
          : this.answer(words);
      const codes = ok === "ip-batch" ? "0" : ok;
      if (!codes.startsWith("probe") && !codes.split(",").includes(String(r.exitCode))) {
        failed = true;
      }
      const fake = command("fake", r.stdout, r.stderr, r.exitCode).argv;
      replaced.push(codes, stdin, String(fake.length), ...fake);
    }
    return spawn([...req.argv.slice(0, 4), ...replaced], req.stdin);
  }

  // The lines of one `ip -batch -`, answered one by one up to the first failing one, as ip does.
  private batch(lines: readonly string[]): RunResult {
    let stdout = "";
    let stderr = "";
    for (const [i, line] of lines.entries()) {
      const r = this.answer(["ip", ...line.split(" ")]);
      stdout += r.stdout;
      stderr += r.stderr;
      if (r.exitCode !== 0)
        return { exitCode: 1, stdout, stderr: `${stderr}Command failed -:${i + 1}\n` };
    }
    return { exitCode: 0, stdout, stderr };
  }

  private answer(argv: readonly string[]): RunResult {
    const line = argv.join(" ");
    if (line.startsWith("ip link add name br0")) this.mtu = 1500;
    else if (line.startsWith("ip link del dev br0"))
      [this.mtu, this.alias] = [undefined, undefined];
    const alias = /^ip link set dev br0 alias (\S+)$/.exec(line);
    if (alias) this.alias = alias[1];
    const mtu = /^ip link set dev br0 mtu (\d+)$/.exec(line);
    if (mtu) this.mtu = Number(mtu[1]);
    if (argv[3] !== "bridge-probe.sh") return { exitCode: 0, stdout: "", stderr: "" };
    const br0 =
      this.mtu === undefined
        ? undefined
        : { mtu: this.mtu, ...(this.alias !== undefined ? { ifalias: this.alias } : {}) };
    return { exitCode: 0, stdout: fakeBridgeProbe(br0), stderr: "" };
  }
}

describe("round trips of each operation", () => {
  it("create, update and delete are two commands each, a read one, a no-change update one", async () => {
    const host = new BridgeHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const count = async (op: () => Promise<unknown>): Promise<string[]> => {
      const from = host.ran.length;
      await op();
      return host.ran.slice(from);
    };
    const news = { connection: conn, name: "br0", persistence: "none" };
    let outs: Record<string, unknown> = {};
    expect(await count(async () => ({ outs } = await lc.create(news)))).toEqual([
      "bridge-probe.sh",
      "apply-batch.sh",
    ]);
    expect(outs["macAddress"]).toBe("aa:bb:cc:dd:ee:ff");
    const updated = { ...news, mtu: 1400 };
    expect(await count(() => lc.update("br0", outs, updated))).toEqual([
      "bridge-probe.sh",
      "apply-batch.sh",
    ]);
    expect(await count(() => lc.update("br0", outs, updated))).toEqual(["bridge-probe.sh"]);
    expect(await count(() => lc.read("br0", { ...outs, mtu: 1400 }))).toEqual(["bridge-probe.sh"]);
    expect(await count(() => lc.delete("br0", { ...outs, mtu: 1400 }))).toEqual([
      "bridge-probe.sh",
      "apply-batch.sh",
    ]);
    expect((await lc.read("br0", outs)).id).toBe("");
    // the look after a create or an update may run the apply's last ip lines (probe-ip); the look
    // after a delete, which asks for what the lines took away, never does
    const kinds = host.argvs
      .filter((argv) => argv[3] === "apply-batch.sh")
      .map((argv) => argv.slice(4).filter((w) => w === "probe" || w === "probe-ip"));
    expect(kinds).toEqual([["probe-ip"], ["probe-ip"], ["probe"]]);
  });

  it("tell the look after a delete so, and the look after a create or an update not", async () => {
    const host = new BridgeHost();
    const told: string[] = [];
    const mod = {
      ...bridgeModule,
      probe: (inputs: Parameters<typeof bridgeModule.probe>[0], ctx: ObserveContext) => {
        told.push(ctx.after ?? "none");
        return bridgeModule.probe(inputs, ctx);
      },
    };
    const lc = new Lifecycle(mod, () => host);
    const news = { connection: conn, name: "br0", persistence: "none" };
    const { outs } = await lc.create(news);
    await lc.update("br0", outs, { ...news, mtu: 1400 });
    await lc.delete("br0", { ...outs, mtu: 1400 });
    // the look in each apply (the first looks are the module's own observe)
    expect(told).toEqual(["converge", "converge", "delete"]);
  });

  it("ten refreshes of one host at once are one command", async () => {
    const host = new BridgeHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const { outs } = await lc.create({ connection: conn, name: "br0", persistence: "none" });
    const from = host.ran.length;
    const reads = await Promise.all(Array.from({ length: 10 }, () => lc.read("br0", outs)));
    expect(host.ran.slice(from)).toEqual(["apply-batch.sh"]);
    expect(reads.map((r) => r.id)).toEqual(Array.from({ length: 10 }, () => "br0"));
  });

  it("ask systemd about their units first, one systemctl per way two probes or more ask", () => {
    const unit = (kind: string, name: string) => `pulumi-hypervisor-${kind}-${name}.service`;
    const probe = (units: ProbeUnits): ProbeCommand => ({ ...command("p", ""), units });
    const NETWORKD = "systemd-networkd.service";
    const probes = [
      probe({ active: [NETWORKD, unit("bridge", "br0")], enabled: [unit("bridge", "br0")] }),
      probe({ active: [NETWORKD, unit("tap", "t0")], enabled: [unit("tap", "t0")] }),
      probe({ pid: [unit("dnsmasq", "lan")], enabled: [unit("dnsmasq", "lan")] }),
      // a glob character would make list-unit-files match other units: asked by its own probe
      probe({ active: [unit("nat", "n*")], enabled: [unit("nat", "n*")] }),
    ];
    expect(unitsWords(probes)).toEqual([
      "--active",
      NETWORKD,
      unit("bridge", "br0"),
      unit("tap", "t0"),
      "--enabled",
      unit("bridge", "br0"),
      unit("tap", "t0"),
      unit("dnsmasq", "lan"),
    ]);
    // one probe alone asks as cheaply itself
    expect(unitsWords(probes.slice(2, 3))).toEqual([]);
    const argv = probeBatchArgv(probes);
    const at = argv.indexOf("units");
    expect(argv.slice(at, at + 3)).toEqual(["units", "0", "8"]);
    expect(argv.indexOf("probe-bg")).toBe(at + 3 + 8);
  });

  it("hand the units to systemctl as data, never as shell code, and keep them out of the script cache", () => {
    const dir = tmp();
    const evil = `$(touch ${join(dir, "pwned")})`;
    const words = ["--active", evil, "`id`", "--enabled", evil];
    const r = spawn(scriptArgv(scriptIn(SRC, "apply-batch.sh", ["units", "0", "5", ...words])), "");
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, "", ""]);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
    // a unit's name that is also a script's text stays a word: only apply-batch.sh is kept
    const script = scriptArgv(scriptIn(SRC, "sysctl-probe.sh", ["a"]));
    const batch = scriptArgv(scriptIn(SRC, "apply-batch.sh", ["units", "0", "1", ...script]));
    expect(argvWithCachedScripts(batch).scripts).toHaveLength(1);
  });

  it("a batch stays below Linux's cap on one argument, the command line sshd hands the shell", async () => {
    const host = new BridgeHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const { outs } = await lc.create({ connection: conn, name: "br0", persistence: "none" });
    const from = host.ran.length;
    await Promise.all(Array.from({ length: 40 }, () => lc.read("br0", outs)));
    const batches = host.argvs.slice(from);
    // the longest form: env, sudo with a password, and its announcing script around the batch,
    // whose scripts go as their compact text (a session of its own; a remote shell's request
    // refers to kept texts)
    const bytes = batches.map(
      (argv) =>
        Buffer.byteLength(
          buildRemoteCommand(argvWithCompactScripts(argv), "password", newSudoMarks()),
        ) + 1,
    );
    expect(Math.max(...bytes)).toBeLessThanOrEqual(131_072);
    // the first batch is full: the next probe would not have fit under the limit
    const probeBytes = (bytes[0] ?? 0) / (batches[0] ?? []).filter((w) => w === "probe-bg").length;
    expect(bytes[0]).toBeGreaterThan(MAX_BATCH_BYTES - probeBytes);
    expect(batches.length).toBeLessThanOrEqual(4);
  });
});
