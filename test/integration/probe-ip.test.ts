// A tap's or a bridge's create ends with `ip` lines, and the look after it runs them in its own
// `ip` (issue 12: each process costs the host CPU): apply-batch.sh hands the lines of the apply's
// last `ip -batch` to the probe, which runs them with its query (ab_ip_run). On the real iproute2
// in a throwaway network namespace, through a remote shell's kept scripts as the provider sends
// them: one `ip` for both, the state it reads the same as a look of its own, an apply line's
// failure still the step's (and no line after it runs), a probe line's failure the probe's alone.
// And the look after a delete, which asks only what a delete's plan reads: no `ip` for a tap,
// bridge or served interface that is gone, one `nft` for a NatRule's table. And the look before a
// create: a tap's bridge (and a guest's bridge NIC's) read from sysfs as `ip` would print it, so
// no `ip` starts, and a bridge's first look, with neither the bridge nor a port, asks no route.
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
import { dnsmasqInstanceModule } from "../../provider/src/resources/dnsmasq-instance";
import { DnsmasqInstanceInputs } from "../../provider/src/resources/dnsmasq-instance/schema";
import { natRuleModule } from "../../provider/src/resources/nat-rule";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { parseTapLinks } from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { qemuGuestModule } from "../../provider/src/resources/qemu-guest";
import { QemuGuestInputs } from "../../provider/src/resources/qemu-guest/schema";
import type { Step } from "../../provider/src/step";
import { scratchDirs } from "../support/scratch";

const NS = `pht-pip-${process.pid}`;
const scratch = scratchDirs("probe-ip-");

const sh = (...argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });

// The namespace's /run: what the provider records there (a bridge's ports, sysctl claims) stays
// with this file's hosts, not on the machine.
let RUN = "";

/**
 * Runs each command in the namespace as a remote shell would: script bodies kept in a folder and
 * referred to, with a PATH whose `ip` and `nft` note each start (but `ip netns exec`'s own) and run
 * the real ones, and a /run of this file's own. `kept` false sends the bodies, as where no remote
 * shell starts.
 */
class NamespaceHost implements Host {
  readonly label = `root@${NS}:22`;
  private readonly dir = scratch();
  constructor(private readonly kept = true) {
    mkdirSync(join(this.dir, "bin"));
    for (const tool of ["ip", "nft"]) {
      const real = sh("sh", "-c", `command -v ${tool}`).stdout.trim();
      const log = this.log(tool);
      writeFileSync(
        join(this.dir, "bin", tool),
        `#!/bin/sh\n[ "$1" = netns ] || echo "$*" >>${JSON.stringify(log)}\nexec ${real} "$@"\n`,
      );
      chmodSync(join(this.dir, "bin", tool), 0o755);
      writeFileSync(log, "");
    }
  }
  private log(tool: string): string {
    return join(this.dir, `${tool}-started`);
  }
  /** The arguments of each `ip` (or `nft`) started since the last call. */
  started(tool = "ip"): string[] {
    const lines = readFileSync(this.log(tool), "utf8")
      .split("\n")
      .filter((l) => l !== "");
    writeFileSync(this.log(tool), "");
    return lines;
  }
  async run(req: RunRequest): Promise<RunResult> {
    let argv = [...req.argv];
    if (this.kept) {
      const c = argvWithCachedScripts(argv);
      for (const k of c.scripts) writeFileSync(join(this.dir, k.hash), k.body);
      argv = c.argv;
    }
    const own = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /run && exec "$@"', RUN];
    const r = spawnSync("ip", ["netns", "exec", NS, ...own, ...argv], {
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
const after: ObserveContext = { ...ctx, lookOnly: true, after: "converge" };
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
  RUN = scratch();
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

describe("a tap's look reads a plain bridge from sysfs (bridge-link.sh)", () => {
  const ipLink = (name: string) =>
    parseTapLinks(sh("ip", "-n", NS, "-d", "-j", "link", "show", "dev", name).stdout)[name];
  const firstLook = (host: NamespaceHost, name: string, bridge: string) =>
    tapDeviceModule.observe(host, tap(name, bridge), { ...ctx, creating: true });

  it("start no process before a tap's create, and see the bridge as ip sees it", async () => {
    const ns = (...args: string[]) => expect(sh("ip", "-n", NS, ...args).status).toBe(0);
    ns("link", "add", "bs0", "type", "bridge");
    ns("link", "add", "bs1", "mtu", "1400", "type", "bridge");
    ns("link", "set", "dev", "bs1", "alias", "pulumi-hypervisor");
    ns("link", "set", "dev", "bs1", "up");
    ns("link", "add", "bs2", "type", "bridge");
    ns("link", "set", "dev", "bs2", "alias", "a b:c=d/e@f,g+h");
    const host = new NamespaceHost();
    for (const b of ["bs0", "bs1", "bs2"]) {
      host.started();
      const before = await firstLook(host, `ts-${b}`, b);
      expect(host.started()).toEqual([]);
      expect(before.links[b]).toEqual(ipLink(b));
      expect(tapDeviceModule.plan(tap(`ts-${b}`, b), before).map((s) => s.summary)).toContain(
        `attach ts-${b} to ${b}`,
      );
    }
    expect(ipLink("bs1")).toMatchObject({ kind: "bridge", up: true, mtu: 1400 });
    expect(ipLink("bs2")?.ifalias).toBe("a b:c=d/e@f,g+h");
  });

  it("ask ip for a bridge whose alias needs quoting or has lines, and for a link that is no bridge", async () => {
    const ns = (...args: string[]) => expect(sh("ip", "-n", NS, ...args).status).toBe(0);
    ns("link", "add", "bs3", "type", "bridge");
    ns("link", "set", "dev", "bs3", "alias", 'say "hi"\\');
    ns("link", "add", "bs4", "type", "bridge");
    ns("link", "set", "dev", "bs4", "alias", "one\ntwo");
    ns("link", "add", "vs5", "type", "veth", "peer", "name", "vs5p");
    const host = new NamespaceHost();
    for (const b of ["bs3", "bs4"]) {
      host.started();
      const before = await firstLook(host, `ts-${b}`, b);
      expect(host.started()).toEqual(["-d -j -batch -"]);
      expect(before.links[b]).toEqual(ipLink(b));
    }
    expect(ipLink("bs3")?.ifalias).toBe('say "hi"\\');
    expect(ipLink("bs4")?.ifalias).toBe("one\ntwo");
    host.started();
    const before = await firstLook(host, "ts-vs5", "vs5");
    expect(host.started()).toEqual(["-d -j -batch -"]);
    expect(() => tapDeviceModule.plan(tap("ts-vs5", "vs5"), before)).toThrow(
      'bridge "vs5" is not a bridge (kind veth)',
    );
  });
});

describe("a QemuGuest's look reads a plain bridge from sysfs", () => {
  it("start no ip for a bridge NIC's bridge, and see it as ip does; a tap still asks ip", async () => {
    const host = new NamespaceHost();
    const ns = (...args: string[]) => expect(sh("ip", "-n", NS, ...args).status).toBe(0);
    ns("link", "add", "bq0", "type", "bridge");
    ns("link", "add", "tq0", "master", "bq0", "type", "veth", "peer", "name", "tq0p");
    const guest = (nic: Record<string, string>) =>
      QemuGuestInputs.parse({
        name: `pipq${process.pid}`,
        nics: [{ mac: "52:54:00:52:00:42", ...nic }],
      });
    host.started();
    const bridged = await qemuGuestModule.observe(host, guest({ bridge: "bq0" }), ctx);
    expect(host.started()).toEqual([]);
    expect(bridged.links["bq0"]).toEqual({ kind: "bridge", tunType: undefined, master: undefined });
    const tapped = await qemuGuestModule.observe(host, guest({ tap: "tq0" }), ctx);
    expect(host.started()).toEqual(["-j -d link show dev tq0"]);
    expect(tapped.links["tq0"]).toEqual({ kind: "veth", tunType: undefined, master: "bq0" });
  });
});

describe("a bridge's create and the look after it in one ip", () => {
  const create = async (host: NamespaceHost, inputs: BridgeInputs, client?: string) => {
    const c = { ...ctx, sshClientAddress: client };
    host.started();
    const before = await bridgeModule.observe(host, inputs, { ...c, creating: true });
    const first = host.started();
    const steps = bridgeModule.plan(inputs, before);
    const probe = probeCommand(bridgeModule.probe(inputs, { ...after, sshClientAddress: client }));
    expect(probe.takesIpLines).toBe(true);
    const r = await applySteps(host, steps, probe);
    const started = host.started();
    const seen = bridgeModule.parse(probeOutput(host.label, probe, r!), inputs, after);
    expect(bridgeModule.plan(inputs, seen)).toEqual([]);
    // the same as a look of its own afterwards
    expect(seen).toEqual(await bridgeModule.observe(host, inputs, { ...c, lookOnly: true }));
    return { first, started, seen, r: r! };
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
    const { first, r, seen } = await create(new NamespaceHost(), inputs, "198.18.200.1");
    // the first look, with neither the bridge nor a port to carry the session, asks no route
    expect(first).toEqual([]);
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
    const { first, seen } = await create(new NamespaceHost(), inputs, "198.18.200.1");
    // a port that exists may carry the session: the first look asks for it and the route
    expect(first).toEqual(["-d -j -batch -"]);
    expect(seen.ports).toEqual(["p5"]);
    expect(linkOf("p5")?.master).toBe("b6");
  });
});

describe("the look after a delete asks only what a delete's plan reads", () => {
  const gone: ObserveContext = { ...ctx, lookOnly: true, after: "delete" };
  const look: ObserveContext = { ...ctx, lookOnly: true };

  it("start no ip for a tap that is gone, and still see one that is left", async () => {
    const host = new NamespaceHost();
    const inputs = tap("t9", "br0");
    await applySteps(host, await createPlan(host, inputs), undefined);
    const steps = tapDeviceModule.plan(undefined, await tapDeviceModule.observe(host, inputs, ctx));
    expect(steps.map((s) => s.summary)).toEqual(["delete tap t9"]);
    // a tap that is left is seen, and its delete's plan is the same
    host.started();
    const left = await tapDeviceModule.observe(host, inputs, gone);
    expect(host.started()).toEqual(["-d -j -batch -"]);
    expect(tapDeviceModule.plan(undefined, left).map((s) => s.summary)).toEqual(["delete tap t9"]);
    const probe = probeCommand(tapDeviceModule.probe(inputs, gone));
    const r = await applySteps(host, steps, probe);
    // the delete's own ip, none for the look: its bridge is not asked for
    expect(host.started()).toEqual(["tuntap del dev t9 mode tap"]);
    const seen = tapDeviceModule.parse(probeOutput(host.label, probe, r!), inputs, gone);
    expect(seen.tap).toBeUndefined();
    expect(tapDeviceModule.plan(undefined, seen)).toEqual([]);
    expect(linkOf("t9")).toBeUndefined();
    // a look of the other kind asks for the bridge, which sysfs describes: still no ip
    const other = await tapDeviceModule.observe(host, inputs, look);
    expect(host.started()).toEqual([]);
    expect(other.links["br0"]?.kind).toBe("bridge");
  });

  it("start no ip for a bridge that is gone, though its port and the SSH client's route remain", async () => {
    expect(
      sh("ip", "-n", NS, "link", "add", "p9", "type", "veth", "peer", "name", "p9p").status,
    ).toBe(0);
    const host = new NamespaceHost();
    const inputs = BridgeInputs.parse({ name: "b9", ports: ["p9"], addresses: ["198.18.83.1/24"] });
    const client = "198.18.83.7";
    const c = { ...ctx, sshClientAddress: client };
    const created = await bridgeModule.observe(host, inputs, { ...c, creating: true });
    await applySteps(host, bridgeModule.plan(inputs, created), undefined);
    const steps = bridgeModule.plan(undefined, await bridgeModule.observe(host, inputs, c));
    // the client's route runs over b9: its delete moves the address back to its port
    expect(steps.map((s) => s.summary)).toEqual([
      "move b9's addresses and routes back to p9 and delete b9 (carries this SSH session)",
      "forget b9's recorded ports",
    ]);
    const probe = probeCommand(bridgeModule.probe(inputs, { ...gone, sshClientAddress: client }));
    host.started();
    const r = await applySteps(host, steps, probe);
    // the delete's own ips (a step that reports how far it got runs each), none for the look
    expect(host.started()).toEqual([
      "link set dev p9 nomaster",
      "link set dev p9 up",
      "addr del 198.18.83.1/24 dev b9",
      "addr add 198.18.83.1/24 dev p9",
      "link del dev b9",
    ]);
    const seen = bridgeModule.parse(probeOutput(host.label, probe, r!), inputs, gone);
    expect(seen.bridge).toBeUndefined();
    expect(bridgeModule.plan(undefined, seen)).toEqual([]);
    expect(linkOf("b9")).toBeUndefined();
    // a look of the other kind asks for the port and the route to the client
    const other = await bridgeModule.observe(host, inputs, { ...look, sshClientAddress: client });
    expect(host.started()).toEqual(["-d -j -batch -"]);
    expect(bridgeModule.plan(undefined, other)).toEqual([]);
  });

  it("start no ip for the served interface's addresses after a DnsmasqInstance's delete", async () => {
    const host = new NamespaceHost();
    const inputs = DnsmasqInstanceInputs.parse({
      name: `pip${process.pid}`,
      interface: "br0",
      subnet: "198.18.84.0/24",
      dhcpRange: { start: "198.18.84.100", end: "198.18.84.150", leaseTime: "1h" },
    });
    host.started();
    const seen = await dnsmasqInstanceModule.observe(host, inputs, gone);
    expect(host.started()).toEqual([]);
    expect(dnsmasqInstanceModule.plan(undefined, seen)).toEqual([]);
    const other = await dnsmasqInstanceModule.observe(host, inputs, look);
    expect(host.started()).toEqual(["-j addr show dev br0"]);
    expect(dnsmasqInstanceModule.plan(undefined, other)).toEqual([]);
  });

  it("look for a NatRule's table in the list of tables after its delete: one nft", async () => {
    const host = new NamespaceHost();
    const inputs = NatRuleInputs.parse({
      name: "pip9",
      sourceCidr: "198.18.85.0/24",
      outInterface: "br0",
      masquerade: true,
    });
    const before = await natRuleModule.observe(host, inputs, { ...ctx, creating: true });
    await applySteps(host, natRuleModule.plan(inputs, before), undefined);
    // a table that is left is seen
    host.started("nft");
    const left = await natRuleModule.observe(host, inputs, gone);
    expect(host.started("nft")).toEqual(["list tables ip", "-j list table ip pulumi_hv_pip9"]);
    const steps = natRuleModule.plan(undefined, left);
    expect(steps.length).toBeGreaterThan(0);
    const probe = probeCommand(natRuleModule.probe(inputs, gone));
    host.started("nft");
    const r = await applySteps(host, steps, probe);
    // the delete's nft, then the look's one
    expect(host.started("nft").slice(-1)).toEqual(["list tables ip"]);
    const seen = natRuleModule.parse(probeOutput(host.label, probe, r!), inputs, gone);
    expect(natRuleModule.plan(undefined, seen)).toEqual([]);
    // a look of the other kind tries the table first
    const other = await natRuleModule.observe(host, inputs, look);
    expect(host.started("nft")).toEqual(["-j list table ip pulumi_hv_pip9", "list tables ip"]);
    expect(other).toEqual(seen);
  });
});
