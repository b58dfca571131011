// examples/fleet on three lab hosts: the program runs under mocks to capture its resources, which
// are then applied through the dynamic-provider plugin the way the engine applies them. Proves
// that preview touches no host, that up stamps the same network on every host, that a change to
// one host's entry touches only that host, that refresh reports drift only where it is, and that
// destroy removes everything in reverse dependency order.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startLab, type Lab, type LabHost } from "../lab/lab";
import type { DynamicProviderPlugin, Engine, ResourceSpec, StepRecord } from "../support/engine";
import { startEngine } from "../support/harness";
import { runProgramWithMocks } from "../support/mocks";

// Lab host indices 74-76 (71-73 are the benchmark's); guest network 198.18.174.0/24 on each.
const FIRST_INDEX = 74;
const SUBNET = "198.18.174.0/24";

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let dir: string;
let hostsFile: string;

interface HostEntry {
  name: string;
  connection: ReturnType<LabHost["connection"]>;
  uplink: string;
  leaseRange?: { start: string; end: string };
}

function hostEntries(): HostEntry[] {
  return lab.hosts.map((h) => ({ name: h.name, connection: h.connection(), uplink: "wan0" }));
}

// The program's own dependencies (the mocks do not report them): dnsmasq, NAT and the tap use
// the bridge; the guest uses the tap and declares dependsOn on dnsmasq and NAT.
function dependenciesOf(name: string): string[] {
  const m = /^(h\d+)-(bridge|dhcp|nat|tap|guest)$/.exec(name);
  if (!m) throw new Error(`examples/fleet made an unexpected resource ${name}`);
  const [, host, kind] = m;
  if (kind === "bridge") return [];
  if (kind === "guest") return [`${host}-dhcp`, `${host}-nat`, `${host}-tap`];
  return [`${host}-bridge`];
}

/** Runs examples/fleet under mocks on the given hosts file entries; returns engine specs. */
async function program(entries: HostEntry[]): Promise<ResourceSpec[]> {
  writeFileSync(hostsFile, JSON.stringify(entries), { mode: 0o600 });
  const saved = process.env["HYPERVISOR_FLEET_HOSTS"];
  process.env["HYPERVISOR_FLEET_HOSTS"] = hostsFile;
  try {
    const captured = await runProgramWithMocks(
      async () => {
        vi.resetModules();
        return await import("../../examples/fleet/index");
      },
      {
        project: "fleet",
        stack: "test",
        config: { "fleet:subnet": SUBNET, "fleet:guestRunning": "false" },
      },
    );
    return captured.map((r) => ({
      type: r.type,
      name: r.name,
      inputs: r.inputs,
      dependsOn: dependenciesOf(r.name),
    }));
  } finally {
    if (saved === undefined) delete process.env["HYPERVISOR_FLEET_HOSTS"];
    else process.env["HYPERVISOR_FLEET_HOSTS"] = saved;
  }
}

async function connectionsPerHost(): Promise<number[]> {
  return Promise.all(lab.hosts.map((h) => h.sshConnectionCount()));
}

// sshd logs "Starting session" for each remote command (LogLevel VERBOSE).
async function commandsPerHost(): Promise<number[]> {
  return Promise.all(
    lab.hosts.map(async (h) => {
      const log = await readFile(h.sshdLogPath, "utf8");
      return log.split("\n").filter((l) => /\bStarting session: /.test(l)).length;
    }),
  );
}

function ops(steps: StepRecord[]): string[] {
  return steps.map((s) => `${s.name} ${s.op}`).sort();
}

const KINDS = ["bridge", "dhcp", "guest", "nat", "tap"];
const allAs = (op: string): string[] =>
  lab.hosts.flatMap((h) => KINDS.map((k) => `${h.name}-${k} ${op}`)).sort();

async function run(h: LabHost, argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  expect(r.code, `${argv.join(" ")} on ${h.netns}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function dnsmasqConf(h: LabHost): Promise<string> {
  return run(h, ["cat", "/etc/pulumi-hypervisor/dnsmasq/br-fleet/dnsmasq.conf"]);
}

beforeAll(async () => {
  lab = await startLab({ name: "itfleet", hosts: 3, wan: true, firstIndex: FIRST_INDEX });
  dir = mkdtempSync(path.join(tmpdir(), "fleet-test-"));
  hostsFile = path.join(dir, "hosts.json");
  ({ plugin, engine } = await startEngine());
});

afterAll(async () => {
  try {
    if (engine && engine.state.size > 0) await engine.destroy().catch(() => undefined);
  } finally {
    await plugin?.stop();
    await lab?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

describe("examples/fleet on three lab hosts", () => {
  it("captures the same five resources per host from the hosts file", async () => {
    const specs = await program(hostEntries());
    expect(specs.map((s) => s.name).sort()).toEqual(
      lab.hosts.flatMap((h) => KINDS.map((k) => `${h.name}-${k}`)).sort(),
    );
    const leases = specs
      .filter((s) => s.type.endsWith(":DnsmasqInstance"))
      .map((s) => s.inputs["dhcpRange"]);
    // each host gets its own slice of the shared subnet
    expect(leases).toEqual([
      { start: "198.18.174.10", end: "198.18.174.29", leaseTime: "1h" },
      { start: "198.18.174.30", end: "198.18.174.49", leaseTime: "1h" },
      { start: "198.18.174.50", end: "198.18.174.69", leaseTime: "1h" },
    ]);
  });

  it("preview plans a create of everything and changes no host", async () => {
    const connectionsBefore = await connectionsPerHost();
    const { steps, failures } = await engine.preview(await program(hostEntries()));
    expect(failures).toEqual({});
    expect(ops(steps)).toEqual(allAs("create"));
    expect(await connectionsPerHost()).toEqual(connectionsBefore);
    for (const h of lab.hosts) {
      expect((await h.exec(["ip", "link", "show", "br-fleet"])).code).not.toBe(0);
    }
  });

  it("up stamps the network onto every host with one connection each", async () => {
    const connectionsBefore = await connectionsPerHost();
    const { steps } = await engine.up(await program(hostEntries()));
    expect(ops(steps)).toEqual(allAs("create"));
    const connectionsAfter = await connectionsPerHost();
    // one pooled connection per host (idle-close may add one on a slow host; never one per command)
    connectionsAfter.forEach((n, i) =>
      expect(n - (connectionsBefore[i] ?? 0)).toBeLessThanOrEqual(2),
    );
    for (const h of lab.hosts) {
      const addr = JSON.parse(await run(h, ["ip", "-j", "addr", "show", "br-fleet"])) as Array<{
        addr_info: Array<{ local: string; prefixlen: number; family: string }>;
      }>;
      expect(addr[0]?.addr_info.filter((a) => a.family === "inet")).toMatchObject([
        { local: "198.18.174.1", prefixlen: 24 },
      ]);
      expect(await run(h, ["cat", "/sys/class/net/fleet-tap0/master/uevent"])).toMatch(
        /INTERFACE=br-fleet/,
      );
      expect(await run(h, ["nft", "list", "table", "ip", "pulumi_hv_br-fleet"])).toMatch(
        /masquerade/,
      );
      expect(await dnsmasqConf(h)).toMatch(/dhcp-range=.*198\.18\.174\.\d+/);
      const guest = engine.state.get(`${h.name}-guest`);
      expect(guest?.outputs["status"]).toBe("stopped");
    }
  });

  it("a second preview has no changes", async () => {
    const { steps, failures } = await engine.preview(await program(hostEntries()));
    expect(failures).toEqual({});
    expect(ops(steps)).toEqual(allAs("same"));
  });

  it("a new lease range for one host updates only that host's dnsmasq", async () => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    const before = await Promise.all([dnsmasqConf(h1), dnsmasqConf(h3)]);
    const pidBefore = engine.state.get(`${h2.name}-dhcp`)?.outputs["pid"];
    const entries = hostEntries();
    entries[1] = { ...entries[1]!, leaseRange: { start: "198.18.174.200", end: "198.18.174.220" } };
    const commandsBefore = await commandsPerHost();
    const { steps } = await engine.up(await program(entries));
    const commandsAfter = await commandsPerHost();
    expect(steps.filter((s) => s.op !== "same").map((s) => `${s.name} ${s.op}`)).toEqual([
      `${h2.name}-dhcp update`,
    ]);
    expect(await dnsmasqConf(h2)).toMatch(/dhcp-range=.*198\.18\.174\.200,198\.18\.174\.220/);
    expect(await Promise.all([dnsmasqConf(h1), dnsmasqConf(h3)])).toEqual(before);
    // h1 and h3 ran no remote command at all
    expect(commandsAfter[0]).toBe(commandsBefore[0]);
    expect(commandsAfter[2]).toBe(commandsBefore[2]);
    expect(commandsAfter[1]!).toBeGreaterThan(commandsBefore[1]!);
    // a range change restarts dnsmasq (the lease file is kept)
    expect(engine.state.get(`${h2.name}-dhcp`)?.outputs["pid"]).not.toBe(pidBefore);
  });

  it("refresh reports drift made by hand on one host, and only there", async () => {
    const h3 = lab.hosts[2]!;
    await run(h3, ["ip", "addr", "add", "198.18.174.99/24", "dev", "br-fleet"]);
    const { steps } = await engine.refresh();
    const changed = steps.filter((s) => s.op !== "same");
    expect(changed.map((s) => `${s.name} ${s.op}`)).toEqual([`${h3.name}-bridge refresh-changed`]);
    expect(engine.state.get(`${h3.name}-bridge`)?.outputs["addresses"]).toEqual([
      "198.18.174.1/24",
      "198.18.174.99/24",
    ]);
  });

  it("destroy removes everything, dependents first, and leaves the hosts clean", async () => {
    const { steps } = await engine.destroy();
    expect(ops(steps)).toEqual(allAs("delete"));
    const order = steps.map((s) => s.name);
    for (const h of lab.hosts) {
      const at = (k: string): number => order.indexOf(`${h.name}-${k}`);
      for (const dep of ["dhcp", "nat", "tap"]) {
        expect(at("guest")).toBeLessThan(at(dep));
        expect(at(dep)).toBeLessThan(at("bridge"));
      }
    }
    expect(engine.state.size).toBe(0);
    for (const h of lab.hosts) {
      expect((await h.exec(["ip", "link", "show", "br-fleet"])).code).not.toBe(0);
      expect((await h.exec(["ip", "link", "show", "fleet-tap0"])).code).not.toBe(0);
      expect(await run(h, ["nft", "list", "tables"])).not.toMatch(/pulumi_hv_/);
      const left = await run(h, [
        "sh",
        "-c",
        "find /etc/pulumi-hypervisor/dnsmasq /etc/pulumi-hypervisor/qemu -mindepth 1 2>/dev/null; true",
      ]);
      expect(left.trim()).toBe("");
    }
  });
});
