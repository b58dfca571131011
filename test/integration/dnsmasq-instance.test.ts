// DnsmasqInstance on a real lab host, through the dynamic-provider plugin driven as the engine
// drives it, with real busybox udhcpc clients in namespaces attached to the bridges.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scriptArgv } from "../../provider/src/host/script";
import {
  observeCall,
  parseDnsmasqState,
} from "../../provider/src/resources/dnsmasq-instance/observe";
import {
  planDnsmasqInstance,
  reloadStep,
  startStep,
} from "../../provider/src/resources/dnsmasq-instance/plan";
import {
  renderDhcpHosts,
  renderDnsmasqConf,
} from "../../provider/src/resources/dnsmasq-instance/render";
import {
  DnsmasqInstanceInputs,
  dnsmasqPaths,
} from "../../provider/src/resources/dnsmasq-instance/schema";
import { stepArgv, type Step } from "../../provider/src/step";
import { labGuestNet, type Lab, type LabHost } from "../../lab";
import { statFields } from "../../lab/exec";
import { createDhcpClient, type DhcpClient } from "../support/dhcp-client";
import {
  CheckFailedError,
  PluginError,
  type DynamicProviderPlugin,
  type Engine,
  type ResourceSpec,
} from "../../lab/engine/engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// Guest networks inside the lab host: ours, the foreign dnsmasq's, and one outside both.
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);
const NET_2 = labGuestNet(2);

/** Returns a RegExp that matches text literally. */
const literal = (text: string): RegExp => new RegExp(text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));

let lab: Lab;
let h: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;
const clients: DhcpClient[] = [];

const BRIDGE = "br-dm";
const FOREIGN_BRIDGE = "br-fx";
const FOREIGN_DIR = "/var/lib/foreign-dnsmasq";
const FOREIGN_CONF = `${FOREIGN_DIR}/dnsmasq.conf`;
const FOREIGN_PID = `${FOREIGN_DIR}/dnsmasq.pid`;
const CONF = "/etc/pulumi-hypervisor/dnsmasq/guests/dnsmasq.conf";
const HOSTS = "/etc/pulumi-hypervisor/dnsmasq/guests/dhcp-hosts";
const DIRS = [
  "/etc/pulumi-hypervisor/dnsmasq/guests",
  "/run/pulumi-hypervisor/dnsmasq/guests",
  "/var/lib/pulumi-hypervisor/dnsmasq/guests",
];
const LEASES = "/var/lib/pulumi-hypervisor/dnsmasq/guests/dnsmasq.leases";

const ALPHA = { mac: "52:54:00:13:00:01", ip: `${NET_0}.11`, hostname: "alpha" };
const BETA = { mac: "52:54:00:13:00:02", ip: `${NET_0}.12`, hostname: "beta" };

function instanceInputs(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "guests",
    interface: BRIDGE,
    subnet: `${NET_0}.0/24`,
    dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.150`, leaseTime: "1h" },
    staticLeases: [ALPHA],
    router: `${NET_0}.1`,
    dnsServers: [`${NET_0}.1`],
    domain: "lab.test",
    dns: true,
    ...over,
  };
}

async function program(over: Record<string, unknown> = {}): Promise<ResourceSpec[]> {
  return [
    await spec("Bridge", "brd", {
      connection: h.connection(),
      name: BRIDGE,
      addresses: [`${NET_0}.1/24`],
    }),
    await spec("DnsmasqInstance", "dm", { connection: h.connection(), ...instanceInputs(over) }, [
      "brd",
    ]),
  ];
}

async function sh(script: string, ...args: string[]): Promise<string> {
  const r = await h.exec(["sh", "-c", script, "sh", ...args]);
  if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Returns the argv of a live process on the lab host, or undefined when it is gone (or a zombie). */
async function argvOf(pid: number): Promise<string[] | undefined> {
  const out = await sh('tr "\\000" "\\n" < /proc/$1/cmdline 2>/dev/null || true', String(pid));
  return out === "" ? undefined : out.replace(/\n$/, "").split("\n");
}

/** Returns the start time (clock ticks) of a process: equal across calls only for the same process. */
async function startTime(pid: number): Promise<string> {
  const stat = await sh("cat /proc/$1/stat", String(pid));
  return statFields(stat)[19] ?? "";
}

const leaseFile = async (): Promise<string> => sh('cat "$1"', LEASES);

/** Returns "mode group-id path" of each file, as stat prints them. */
const modes = async (...paths: string[]): Promise<string[]> =>
  (await sh('stat -c "%a %g %n" -- "$@"', ...paths)).trim().split("\n");

/** Returns the group id a process runs as (its real gid). */
const gidOf = async (pid: number): Promise<string> =>
  (
    await sh("sed -n 's/^Gid:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/$1/status", String(pid))
  ).trim();
const lineFor = (file: string, mac: string): string | undefined =>
  file.split("\n").find((l) => l.split(" ")[1] === mac);
const exists = async (path: string): Promise<boolean> =>
  (await sh('if [ -e "$1" ]; then echo y; else echo n; fi', path)).trim() === "y";
const foreignPid = async (): Promise<number> => Number((await sh('cat "$1"', FOREIGN_PID)).trim());
const dmOutputs = (): Record<string, unknown> => engine.state.get("dm")?.outputs ?? {};

async function client(name: string, bridge: string, mac: string): Promise<DhcpClient> {
  const c = await createDhcpClient(h, { name, bridge, mac });
  clients.push(c);
  return c;
}

/** Runs fn and returns how long it took in milliseconds. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return Math.round(performance.now() - t0);
}

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "itdnsmasq", hosts: 1 }));
  h = lab.hosts[0] as LabHost;
  // A dnsmasq the provider does not own, on another bridge of the same host (as libvirt runs one).
  await sh(
    [
      "set -e",
      'ip link add "$1" type bridge',
      `ip addr add ${NET_1}.1/24 dev "$1"`,
      'ip link set "$1" up',
      'mkdir -p "$2"',
      `printf "%s\\n" "interface=$1" bind-dynamic except-interface=lo no-hosts no-resolv no-ping "pid-file=$4" "dhcp-leasefile=$2/dnsmasq.leases" "dhcp-range=${NET_1}.100,${NET_1}.150,1h" > "$3"`,
      'dnsmasq --conf-file="$3"',
    ].join("\n"),
    FOREIGN_BRIDGE,
    FOREIGN_DIR,
    FOREIGN_CONF,
    FOREIGN_PID,
  );
});

afterAll(async () => {
  for (const c of clients) await c.remove().catch(() => undefined);
  await stopLabWithEngine({ lab, plugin });
});

describe("DnsmasqInstance on a lab host", () => {
  it("rejects bad input at check, naming the property, without connecting", async () => {
    const before = await h.sshConnectionCount();
    const bad: Array<[Record<string, unknown>, string, RegExp]> = [
      [
        { dhcpRange: { start: `${NET_0}.150`, end: `${NET_0}.100` } },
        "dhcpRange",
        literal(`start ${NET_0}.150 is after end ${NET_0}.100`),
      ],
      [
        { staticLeases: [{ mac: "52:54:00:13:00:09", ip: `${NET_2}.9` }] },
        "staticLeases[0].ip",
        literal(`outside the subnet ${NET_0}.0/24`),
      ],
      [
        { staticLeases: [ALPHA, { ...BETA, mac: ALPHA.mac }] },
        "staticLeases[1].mac",
        /already used by staticLeases\[0\]/,
      ],
      [
        { staticLeases: [ALPHA, { ...BETA, ip: ALPHA.ip }] },
        "staticLeases[1].ip",
        /already used by staticLeases\[0\]/,
      ],
      [
        { staticLeases: [{ ...ALPHA, mac: "52:54:00:13:00" }] },
        "staticLeases[0].mac",
        /six hex octets/,
      ],
      [
        { staticLeases: [{ ...ALPHA, hostname: "bad_name" }] },
        "staticLeases[0].hostname",
        /must be a DNS label/,
      ],
      [{ interface: "br0;reboot" }, "interface", /a Linux interface name/],
      [
        { dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.150`, leaseTime: "30s" } },
        "dhcpRange.leaseTime",
        /at least 2 minutes/,
      ],
      [{ name: "../etc" }, "name", /starting with a letter or digit/],
    ];
    for (const [over, property, reason] of bad) {
      const res = [
        await spec("DnsmasqInstance", "bad", {
          connection: h.connection(),
          ...instanceInputs(over),
        }),
      ];
      const err = await engine.up(res).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckFailedError);
      const failures = (err as CheckFailedError).failures["bad"] ?? [];
      expect(failures.map((f) => f.property)).toEqual([property]);
      expect(failures[0]?.reason.startsWith(`${property}: `)).toBe(true);
      expect(failures[0]?.reason).toMatch(reason);
    }
    expect(await h.sshConnectionCount()).toBe(before);
    expect(engine.state.size).toBe(0);
  });

  it("refuses an interface that does not exist on the host, starting nothing", async () => {
    const res = [
      await spec("DnsmasqInstance", "nope", {
        connection: h.connection(),
        ...instanceInputs({ name: "nope", interface: "br-nope" }),
      }),
    ];
    const err = await engine.up(res).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toContain(
      `dnsmasq instance "nope" on root@${h.address}:22: interface "br-nope" does not exist on the host`,
    );
    expect(engine.state.has("nope")).toBe(false);
    expect(await exists("/etc/pulumi-hypervisor/dnsmasq/nope")).toBe(false);
  });

  it("reads the served interface's addresses alone, and none of a link that is not there", async () => {
    const interfaces = async (iface: string) => {
      const r = await h.exec(scriptArgv(observeCall(dnsmasqPaths("guests"), iface)));
      // a link that is not there is found so by the shell: no ip to fail and complain
      expect(r.stderr).toBe("");
      return parseDnsmasqState("guests", r.stdout).interfaces;
    };
    // the host has more links (lo, its uplink): only the one asked for is read
    expect((await sh("ls /sys/class/net")).trim().split("\n").length).toBeGreaterThan(2);
    expect(await interfaces(FOREIGN_BRIDGE)).toEqual({ [FOREIGN_BRIDGE]: [`${NET_1}.1/24`] });
    expect(await interfaces("br-nope")).toEqual({});
    expect(await interfaces("-a")).toEqual({});
  });

  it("creates dnsmasq on a bridge; a client gets exactly its static address, router, DNS and domain", async () => {
    const foreign = await foreignPid();
    const { steps } = await engine.up(await program());
    expect(steps.map((s) => [s.op, s.name])).toEqual([
      ["create", "brd"],
      ["create", "dm"],
    ]);
    const pid = dmOutputs()["pid"] as number;
    expect(await argvOf(pid)).toEqual(["dnsmasq", `--conf-file=${CONF}`]);
    expect(dmOutputs()).toMatchObject({ configPath: CONF, leasesPath: LEASES });
    expect(await sh('cat "$1"', CONF)).toBe(
      renderDnsmasqConf(DnsmasqInstanceInputs.parse(instanceInputs())),
    );
    // names, MACs and addresses: root and the group dnsmasq runs as (not root) read them, no one else
    const gid = await gidOf(pid);
    expect(gid).not.toBe("0");
    expect(await modes(CONF, HOSTS, LEASES)).toEqual(
      [CONF, HOSTS, LEASES].map((f) => `640 ${gid} ${f}`),
    );

    const alpha = await client("alpha", BRIDGE, ALPHA.mac);
    const lease = await alpha.obtain();
    expect(lease).toMatchObject({
      ip: ALPHA.ip,
      mask: 24,
      router: [`${NET_0}.1`],
      dns: [`${NET_0}.1`],
      domain: "lab.test",
      hostname: "alpha",
      leaseSeconds: 3600,
      serverId: `${NET_0}.1`,
    });
    // the client configured it: its address is on eth0
    expect((await alpha.exec(["ip", "-4", "-br", "addr", "show", "dev", "eth0"])).stdout).toContain(
      `${ALPHA.ip}/24`,
    );
    // our DNS answers for the static lease's name in the domain
    const dig = await alpha.exec(["busybox", "nslookup", "alpha.lab.test", `${NET_0}.1`]);
    expect(dig.stdout).toContain(ALPHA.ip);

    // the foreign dnsmasq kept running and still serves its own bridge
    expect(await foreignPid()).toBe(foreign);
    const fx = await client("fx", FOREIGN_BRIDGE, "52:54:00:13:00:f1");
    const fxLease = await fx.obtain();
    expect(fxLease.serverId).toBe(`${NET_1}.1`);
    expect(fxLease.ip).toMatch(new RegExp(`^${literal(NET_1).source}\\.1[0-5]\\d$`));
  });

  it("adds a static lease live: same dnsmasq process, the first client's lease survives", async ({
    annotate,
  }) => {
    const pid = dmOutputs()["pid"] as number;
    const gid = await gidOf(pid);
    const started = await startTime(pid);
    const alphaLine = lineFor(await leaseFile(), ALPHA.mac);
    expect(alphaLine).toBeDefined();
    const res = await program({ staticLeases: [ALPHA, BETA] });
    const preview = await engine.preview(res);
    expect(preview.steps.map((s) => [s.op, s.name])).toEqual([
      ["same", "brd"],
      ["update", "dm"],
    ]);
    // as an older version left them: the update makes them private again, without a restart
    await sh('chmod 644 -- "$@"', CONF, HOSTS, LEASES);
    const ms = await timed(async () => {
      const { steps } = await engine.up(res);
      expect(steps.map((s) => s.op)).toEqual(["same", "update"]);
    });
    await annotate(`up adding a static lease (hosts file + SIGHUP) took ${ms} ms`);
    expect(dmOutputs()["pid"]).toBe(pid);
    expect(await startTime(pid)).toBe(started);
    expect(await argvOf(await foreignPid())).toEqual(["dnsmasq", `--conf-file=${FOREIGN_CONF}`]);
    expect(lineFor(await leaseFile(), ALPHA.mac)).toBe(alphaLine);

    const beta = await client("beta", BRIDGE, BETA.mac);
    expect(await beta.obtain()).toMatchObject({
      ip: BETA.ip,
      hostname: "beta",
      router: [`${NET_0}.1`],
    });
    // the same process answered, and the lease file now holds both
    expect(dmOutputs()["pid"]).toBe(pid);
    const file = await leaseFile();
    expect(lineFor(file, ALPHA.mac)).toBe(alphaLine);
    expect(lineFor(file, BETA.mac)).toContain(` ${BETA.ip} beta `);
    // the hosts file the SIGHUP made dnsmasq read again, and the others, are private again
    expect(await modes(CONF, HOSTS, LEASES)).toEqual(
      [CONF, HOSTS, LEASES].map((f) => `640 ${gid} ${f}`),
    );
  });

  it("restarts on a range change, keeping the lease file", async ({ annotate }) => {
    const pid = dmOutputs()["pid"] as number;
    const before = await leaseFile();
    const res = await program({
      staticLeases: [ALPHA, BETA],
      dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.160`, leaseTime: "1h" },
    });
    // as an older version left them: the update makes them private again, without a restart
    await sh('chmod 644 -- "$@"', CONF, HOSTS, LEASES);
    const ms = await timed(async () => {
      const { steps } = await engine.up(res);
      expect(steps.map((s) => s.op)).toEqual(["same", "update"]);
    });
    await annotate(`up changing the range (config + restart) took ${ms} ms`);
    const next = dmOutputs()["pid"] as number;
    expect(next).not.toBe(pid);
    expect(await argvOf(pid)).toBeUndefined();
    expect(await argvOf(await foreignPid())).toEqual(["dnsmasq", `--conf-file=${FOREIGN_CONF}`]);
    expect(await argvOf(next)).toEqual(["dnsmasq", `--conf-file=${CONF}`]);
    expect(await sh('grep "^dhcp-range=" "$1"', CONF)).toBe(
      `dhcp-range=${NET_0}.100,${NET_0}.160,255.255.255.0,1h\n`,
    );
    const after = await leaseFile();
    expect(lineFor(after, ALPHA.mac)).toBe(lineFor(before, ALPHA.mac));
    expect(lineFor(after, BETA.mac)).toBe(lineFor(before, BETA.mac));
    // reported live in the outputs
    expect((dmOutputs()["leases"] as Array<{ ip: string }>).map((l) => l.ip).sort()).toEqual([
      ALPHA.ip,
      BETA.ip,
    ]);
  });

  it("measures a live reload against a restart on the host itself (no SSH)", async ({
    annotate,
  }) => {
    const inputs = DnsmasqInstanceInputs.parse(
      instanceInputs({
        staticLeases: [ALPHA, BETA],
        dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.160`, leaseTime: "1h" },
      }),
    );
    const observe = async () =>
      parseDnsmasqState(
        "guests",
        (await h.exec(scriptArgv(observeCall(dnsmasqPaths("guests"), inputs.interface)))).stdout,
      );
    const run = async (step: Step): Promise<number> => {
      if ("writeFile" in step) throw new Error("expected a command step");
      let code = -1;
      const ms = await timed(async () => {
        code = (await h.exec(stepArgv(step), step.stdin !== undefined ? { stdin: step.stdin } : {}))
          .code;
      });
      expect(code).toBe(0);
      return ms;
    };
    const leases = await leaseFile();
    const reload: number[] = [];
    const restart: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await observe();
      const pid = s.pid ?? -1;
      reload.push(
        await run(reloadStep("guests", pid, s.paths, renderDhcpHosts(inputs.staticLeases))),
      );
      expect((await observe()).pid).toBe(pid);
      restart.push(await run(startStep(inputs, s.paths, pid)));
      const after = await observe();
      expect(after.pid).not.toBe(pid);
      expect(planDnsmasqInstance(inputs, after)).toEqual([]);
    }
    expect(await leaseFile()).toBe(leases);
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[2] ?? NaN;
    await annotate(
      `on the host: reload (hosts file + SIGHUP) median ${median(reload)} ms of ${reload.join("/")}; restart median ${median(restart)} ms of ${restart.join("/")}`,
    );
    // the outputs follow the new process
    await engine.refresh();
    expect(dmOutputs()["pid"]).toBe((await observe()).pid);
  });

  it("reports a killed dnsmasq at refresh and starts it again at up", async () => {
    const pid = dmOutputs()["pid"] as number;
    await sh('kill -9 "$1"', String(pid));
    const res = await program({
      staticLeases: [ALPHA, BETA],
      dhcpRange: { start: `${NET_0}.100`, end: `${NET_0}.160`, leaseTime: "1h" },
    });
    const refreshed = await engine.refresh();
    // (the bridge's own MAC follows its ports, so only the instance's step is of interest here)
    expect(refreshed.steps.find((s) => s.name === "dm")?.op).toBe("refresh-gone");
    const { steps } = await engine.up(res);
    expect(steps.map((s) => [s.op, s.name])).toEqual([
      ["same", "brd"],
      ["create", "dm"],
    ]);
    const next = dmOutputs()["pid"] as number;
    expect(next).not.toBe(pid);
    expect(await argvOf(next)).toEqual(["dnsmasq", `--conf-file=${CONF}`]);
    expect((dmOutputs()["leases"] as Array<{ ip: string }>).map((l) => l.ip).sort()).toEqual([
      ALPHA.ip,
      BETA.ip,
    ]);
    // a refresh with nothing changed on the host changes nothing
    const again = await engine.refresh();
    expect(again.steps.find((s) => s.name === "dm")?.op).toBe("same");
    const alpha = clients.find((c) => c.name === "alpha");
    expect((await alpha?.obtain())?.ip).toBe(ALPHA.ip);
  });

  it("destroy removes our process and files only; the foreign dnsmasq survives", async () => {
    const pid = dmOutputs()["pid"] as number;
    const foreign = await foreignPid();
    const { steps } = await engine.destroy();
    expect(steps.map((s) => [s.op, s.name])).toEqual([
      ["delete", "dm"],
      ["delete", "brd"],
    ]);
    expect(await argvOf(pid)).toBeUndefined();
    for (const d of DIRS) expect(await exists(d)).toBe(false);
    expect(await foreignPid()).toBe(foreign);
    expect(await argvOf(foreign)).toEqual(["dnsmasq", `--conf-file=${FOREIGN_CONF}`]);
    expect(await exists(`${FOREIGN_DIR}/dnsmasq.leases`)).toBe(true);
    const fx = clients.find((c) => c.name === "fx");
    expect((await fx?.obtain())?.serverId).toBe(`${NET_1}.1`);
    // delete is idempotent: deleting what is already gone succeeds
    await plugin.delete(
      "guests",
      "urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:DnsmasqInstance::dm",
      {
        connection: h.connection(),
        ...instanceInputs(),
        __provider: (await spec("DnsmasqInstance", "x", {})).inputs["__provider"],
      },
    );
  });
});

// dnsmasq-start.sh runs no process it does not need (issue 12: each costs the host CPU): the lease
// file is made private with the new files, an absent pid file is not removed, and the temporary
// files are removed only when a failure left them. Spies for rm, chgrp and chmod note each start.
describe("dnsmasq-start.sh's own processes", () => {
  const inputs = DnsmasqInstanceInputs.parse(instanceInputs({ name: "spied" }));
  const p = dnsmasqPaths("spied");
  const SPY = "/tmp/dnsmasq-start-spy";
  const LOG = `${SPY}/log`;
  const started = async (): Promise<string[]> =>
    (await sh('cat "$1"; : > "$1"', LOG)).split("\n").filter((l) => l !== "");
  // Installs as under systemd (its unit would start dnsmasq): checked with dnsmasq --test, not run.
  const install = async (conf?: string) => {
    const step = startStep(inputs, p, undefined, { stop: undefined });
    if (!("script" in step)) throw new Error("expected a script step");
    const args = [...step.script.args];
    if (conf !== undefined) args[8] = String(Buffer.byteLength(conf));
    const stdin =
      conf !== undefined ? conf + renderDhcpHosts(inputs.staticLeases) : (step.stdin ?? "");
    return h.exec(
      ["env", `PATH=${SPY}:/usr/sbin:/usr/bin:/sbin:/bin`, ...scriptArgv({ ...step.script, args })],
      { stdin },
    );
  };
  const tmp = (file: string) => `${literal(file).source}\\.pulumi-tmp\\.\\d+`;

  beforeAll(async () => {
    await sh('mkdir -p "$1" && : > "$2"', SPY, LOG);
    for (const tool of ["rm", "chgrp", "chmod"]) {
      const real = (await sh('command -v "$1"', tool)).trim();
      const body = `#!/bin/sh\necho "${tool} $*" >>${LOG}\nexec ${real} "$@"\n`;
      const r = await h.exec(["sh", "-c", 'cat > "$1" && chmod 755 "$1"', "sh", `${SPY}/${tool}`], {
        stdin: body,
      });
      expect(r.code).toBe(0);
    }
  });

  afterAll(async () => {
    await sh('rm -rf -- "$@"', SPY, p.configDir, p.runDir, p.dataDir);
  });

  it("make config, hosts and lease file private with one chgrp and one chmod, and remove nothing", async () => {
    const r = await install();
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(await started()).toEqual([
      expect.stringMatching(/^chmod go\+x /),
      expect.stringMatching(
        new RegExp(
          `^chgrp -- \\S+ ${tmp(p.configPath)} ${tmp(p.hostsPath)} ${literal(p.leasesPath).source}$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^chmod 0640 -- ${tmp(p.configPath)} ${tmp(p.hostsPath)} ${literal(p.leasesPath).source}$`,
        ),
      ),
    ]);
    const gid = (await modes(p.configPath))[0]?.split(" ")[1];
    expect(await modes(p.configPath, p.hostsPath, p.leasesPath)).toEqual(
      [p.configPath, p.hostsPath, p.leasesPath].map((f) => `640 ${gid} ${f}`),
    );
  });

  it("remove a pid file that is there", async () => {
    await sh('echo 4242 > "$1"', p.pidPath);
    const r = await install();
    expect(r.code).toBe(0);
    expect((await started()).filter((l) => l.startsWith("rm "))).toEqual([`rm -f -- ${p.pidPath}`]);
    expect(await exists(p.pidPath)).toBe(false);
  });

  it("remove the temporary files a rejected config left, and change nothing else", async () => {
    const before = await sh('cat -- "$1"', p.configPath);
    const r = await install("no-such-option-here\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("dnsmasq --test rejected the config");
    expect((await started()).filter((l) => l.startsWith("rm "))).toEqual([
      expect.stringMatching(new RegExp(`^rm -f -- ${tmp(p.configPath)} ${tmp(p.hostsPath)}$`)),
    ]);
    expect(await sh('find "$1" -name "*.pulumi-tmp.*"', p.configDir)).toBe("");
    expect(await sh('cat -- "$1"', p.configPath)).toBe(before);
  });
});
