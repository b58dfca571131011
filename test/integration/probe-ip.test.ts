// A tap's or a bridge's create ends with `ip` lines, and the look after it runs them in its own
// `ip` (issue 12: each process costs the host CPU): apply-batch.sh hands the lines of the apply's
// last `ip -batch` to the probe, which runs them with its query (ab_ip_run). On the real iproute2
// in a throwaway network namespace, through a remote shell's kept scripts as the provider sends
// them: one `ip` for both, the state it reads the same as a look of its own, an apply line's
// failure still the step's (and no line after it runs), a probe line's failure the probe's alone.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applySteps } from "../../provider/src/apply";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { argvWithCachedScripts } from "../../provider/src/host/script";
import { probeCommand, probeOutput, type ObserveContext } from "../../provider/src/resource";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { BridgeInputs } from "../../provider/src/resources/bridge/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import type { Step } from "../../provider/src/step";
import { scratchDirs } from "../support/scratch";

const NS = `pht-pip-${process.pid}`;
const scratch = scratchDirs("probe-ip-");

const sh = (...argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });

/**
 * Runs each command in the namespace as a remote shell would: script bodies kept in a folder and
 * referred to, with a PATH whose `ip` notes each start but `ip netns exec`'s own and runs the real
 * one. `kept` false sends the bodies, as where no remote shell starts.
 */
class NamespaceHost implements Host {
  readonly label = `root@${NS}:22`;
  private readonly dir = scratch();
  readonly log = join(this.dir, "ip-started");
  constructor(private readonly kept = true) {
    mkdirSync(join(this.dir, "bin"));
    const real = sh("sh", "-c", "command -v ip").stdout.trim();
    writeFileSync(
      join(this.dir, "bin", "ip"),
      `#!/bin/sh\n[ "$1" = netns ] || echo "$*" >>${JSON.stringify(this.log)}\nexec ${real} "$@"\n`,
    );
    chmodSync(join(this.dir, "bin", "ip"), 0o755);
    writeFileSync(this.log, "");
  }
  /** The arguments of each `ip` started since the last call. */
  started(): string[] {
    const lines = readFileSync(this.log, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    writeFileSync(this.log, "");
    return lines;
  }
  async run(req: RunRequest): Promise<RunResult> {
    let argv = [...req.argv];
    if (this.kept) {
      const c = argvWithCachedScripts(argv);
      for (const k of c.scripts) writeFileSync(join(this.dir, k.hash), k.body);
      argv = c.argv;
    }
    const r = spawnSync("ip", ["netns", "exec", NS, ...argv], {
      input: req.stdin ?? "",
      encoding: "utf8",
      env: {
        PATH: `${join(this.dir, "bin")}:/usr/sbin:/usr/bin:/sbin:/bin`,
        PULUMI_HYPERVISOR_SCRIPTS: this.dir,
      },
    });
    return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
}

const ctx: ObserveContext = { host: `root@${NS}:22`, sshClientAddress: undefined };
const after: ObserveContext = { ...ctx, lookOnly: true, afterApply: true };
const tap = (name: string, bridge: string) => TapDeviceInputs.parse({ name, bridge });

/** The create's plan, from a look of its own, as a create makes it. */
async function createPlan(host: Host, inputs: TapDeviceInputs): Promise<Step[]> {
  const before = await tapDeviceModule.observe(host, inputs, { ...ctx, creating: true });
  return tapDeviceModule.plan(inputs, before);
}

const linkOf = (name: string) => {
  const r = sh("ip", "-n", NS, "-j", "link", "show", "dev", name);
  return r.status === 0
    ? (JSON.parse(r.stdout) as { master?: string; flags: string[] }[])[0]
    : undefined;
};

beforeAll(() => {
  expect(sh("ip", "netns", "add", NS).status).toBe(0);
  for (const b of ["br0", "br1"])
    expect(sh("ip", "-n", NS, "link", "add", b, "type", "bridge").status).toBe(0);
});

afterAll(() => {
  sh("ip", "netns", "del", NS);
});

describe("a tap's create and the look after it in one ip", () => {
  it("start one ip for the apply's lines and the look, which sees the tap as a look of its own does", async () => {
    const host = new NamespaceHost();
    const inputs = tap("t0", "br0");
    const steps = await createPlan(host, inputs);
    expect(steps.map((s) => s.summary)).toContain("attach t0 to br0");
    host.started();
    const probe = probeCommand(tapDeviceModule.probe(inputs, after));
    expect(probe.takesIpLines).toBe(true);
    const r = await applySteps(host, steps, probe);
    // one ip: the tap's lines and the look's
    expect(host.started()).toEqual(["-d -j -batch -"]);
    expect(r?.exitCode).toBe(0);
    const seen = tapDeviceModule.parse(probeOutput(host.label, probe, r!), inputs, after);
    expect(seen.tap?.master).toBe("br0");
    expect(tapDeviceModule.plan(inputs, seen)).toEqual([]);
    // the same as a look of its own afterwards
    const alone = await tapDeviceModule.observe(host, inputs, { ...ctx, lookOnly: true });
    expect(seen).toEqual(alone);
    expect(linkOf("t0")?.master).toBe("br0");
  });

  it("fail the step, not the look, when a line of the apply fails, and run no line after it", async () => {
    const host = new NamespaceHost();
    const inputs = tap("t1", "br0");
    const steps = await createPlan(host, inputs);
    // made by someone else between the look and the apply: ip tuntap add fails, and the lines
    // after it (attach t1 to br0, up) must not touch someone else's tap
    expect(sh("ip", "-n", NS, "tuntap", "add", "dev", "t1", "mode", "tap").status).toBe(0);
    host.started();
    const err = await applySteps(
      host,
      steps,
      probeCommand(tapDeviceModule.probe(inputs, after)),
    ).catch((e: unknown) => e);
    expect(host.started()).toEqual(["-d -j -batch -"]);
    expect(err).toBeInstanceOf(StepError);
    const e = err as StepError;
    expect([e.done, e.mayHaveRun]).toEqual([0, false]);
    const cause = e.cause as CommandError;
    expect(cause.argv).toEqual(["ip", "tuntap", "add", "dev", "t1", "mode", "tap"]);
    expect(cause.exitCode).toBe(1);
    expect(cause.stderr).toBe("ioctl(TUNSETIFF): Device or resource busy\n");
    expect(linkOf("t1")?.master).toBeUndefined();
    expect(linkOf("t1")?.flags).not.toContain("UP");
  });

  it("fail the look alone when a line of its own fails after the apply's lines ran, counting its own lines", async () => {
    const host = new NamespaceHost();
    const inputs = tap("t2", "br1");
    // the apply's last ip lines take away the bridge the look asks for
    const steps: Step[] = [
      ...(await createPlan(host, inputs)),
      { summary: "drop br1", argv: ["ip", "link", "del", "dev", "br1"] },
    ];
    const probe = probeCommand(tapDeviceModule.probe(inputs, after));
    const r = await applySteps(host, steps, probe);
    expect(r?.exitCode).toBe(1);
    // its lines: the routes via t2, t2, br1
    expect(r?.stderr).toBe('Device "br1" does not exist.\nCommand failed -:3\n');
    expect(() => probeOutput(host.label, probe, r!)).toThrow(CommandError);
    expect(linkOf("t2")?.flags).toContain("UP");
    expect(linkOf("br1")).toBeUndefined();
  });

  it("start two ips where the scripts travel whole (no remote shell), with the same result", async () => {
    const host = new NamespaceHost(false);
    const inputs = tap("t3", "br0");
    const steps = await createPlan(host, inputs);
    host.started();
    const probe = probeCommand(tapDeviceModule.probe(inputs, after));
    const r = await applySteps(host, steps, probe);
    expect(host.started()).toEqual(["-batch -", "-d -j -batch -"]);
    const seen = tapDeviceModule.parse(probeOutput(host.label, probe, r!), inputs, after);
    expect(seen.tap?.master).toBe("br0");
    expect(tapDeviceModule.plan(inputs, seen)).toEqual([]);
  });
});

describe("a bridge's create and the look after it in one ip", () => {
  const create = async (host: NamespaceHost, inputs: BridgeInputs, client?: string) => {
    const c = { ...ctx, sshClientAddress: client };
    const before = await bridgeModule.observe(host, inputs, { ...c, creating: true });
    const steps = bridgeModule.plan(inputs, before);
    host.started();
    const probe = probeCommand(bridgeModule.probe(inputs, { ...after, sshClientAddress: client }));
    expect(probe.takesIpLines).toBe(true);
    const r = await applySteps(host, steps, probe);
    const started = host.started();
    const seen = bridgeModule.parse(probeOutput(host.label, probe, r!), inputs, after);
    expect(bridgeModule.plan(inputs, seen)).toEqual([]);
    // the same as a look of its own afterwards
    expect(seen).toEqual(await bridgeModule.observe(host, inputs, { ...c, lookOnly: true }));
    return { started, seen, r: r! };
  };

  it("start no ip of its own for the look: the apply's last lines run in it", async () => {
    const inputs = BridgeInputs.parse({ name: "b5", addresses: ["198.18.80.1/24"] });
    const { started, seen } = await create(new NamespaceHost(), inputs);
    // the bridge and its marker, its MAC pinned, then its address and up with the look
    expect(started).toEqual([
      "-batch -",
      expect.stringMatching(/^link set dev b5 address /),
      "-d -j -batch -",
    ]);
    expect(seen.bridge?.addresses).toEqual(["198.18.80.1/24"]);
  });

  it("create it in the look's ip where the apply is one run of ip lines (its MAC given)", async () => {
    const inputs = BridgeInputs.parse({
      name: "b7",
      macAddress: "02:00:00:00:00:07",
      addresses: ["198.18.81.1/24"],
    });
    const { started, seen } = await create(new NamespaceHost(), inputs);
    expect(started).toEqual(["-d -j -batch -"]);
    expect([seen.bridge?.macAddress, seen.bridge?.addresses]).toEqual([
      "02:00:00:00:00:07",
      ["198.18.81.1/24"],
    ]);
  });

  it("keep a failing route lookup of its own quiet, as a look of its own does", async () => {
    const inputs = BridgeInputs.parse({ name: "b8", addresses: ["198.18.82.1/24"] });
    // no route to this client in the namespace: the look's last line fails
    const { r, seen } = await create(new NamespaceHost(), inputs, "198.18.200.1");
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe("");
    expect(seen.sshInterface).toBeUndefined();
    expect(seen.bridge?.addresses).toEqual(["198.18.82.1/24"]);
  });

  it("see a port the apply attaches once, though the look asks for it twice", async () => {
    expect(
      sh("ip", "-n", NS, "link", "add", "p5", "type", "veth", "peer", "name", "p5p").status,
    ).toBe(0);
    const inputs = BridgeInputs.parse({ name: "b6", ports: ["p5"] });
    const { seen } = await create(new NamespaceHost(), inputs);
    expect(seen.ports).toEqual(["p5"]);
    expect(linkOf("p5")?.master).toBe("b6");
  });
});
