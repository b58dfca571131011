// What the two examples/fleet integration tests share (fleet.test.ts applies the program through
// the dynamic-provider plugin, fleet-native.test.ts through the native plugin): the hosts file the
// program reads, the program's resource dependencies, counting a host's SSH connections and remote
// commands, and the checks of what the program leaves (or must not leave) on every lab host.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { expect, vi } from "vitest";
import { labGuestNet, startLab, type Lab, type LabHost } from "../../lab";
import { runProgramWithMocks, type CapturedResource } from "../../lab/engine/mocks";

/** The fleet's guest network on every host (first three octets; hosts' networks are private to them). */
export const FLEET_NET = labGuestNet(0);

/** The kinds of resource the fleet program declares for every host, named `<host>-<kind>`. */
export const FLEET_KINDS = ["bridge", "dhcp", "guest", "nat", "tap"];

/** An engine's resource state, as far as these checks read it. */
interface EngineState {
  readonly state: ReadonlyMap<string, { outputs: Record<string, unknown> }>;
}

/** An engine that can destroy what it holds (both engines of the lab). */
interface DestroyingEngine {
  readonly state: ReadonlyMap<string, unknown>;
  destroy(): Promise<unknown>;
}

/** The three lab hosts with a WAN that a fleet test applies the program to, and its hosts file. */
export interface FleetLab {
  lab: Lab;
  /**
   * Runs a fleet program (`load` imports it, fresh) under mocks with `entries` as its hosts file
   * (in a scratch folder of the test's own) and FLEET_NET as its subnet; returns what it declared.
   */
  capture(load: () => Promise<unknown>, entries: FleetHostEntry[]): Promise<CapturedResource[]>;
  /**
   * Destroys what `engine` still holds (best effort), then runs `stopEngine`, stops the lab and
   * removes the scratch folder, each even when an earlier one failed.
   */
  stop(engine: DestroyingEngine | undefined, stopEngine: () => Promise<void>): Promise<void>;
}

/** Starts three lab hosts with a WAN named `name` and makes a scratch folder for the hosts file. */
export async function startFleetLab(name: string): Promise<FleetLab> {
  const lab = await startLab({ name, hosts: 3, wan: true });
  const dir = mkdtempSync(path.join(tmpdir(), `${name}-`));
  return {
    lab,
    capture: (load, entries) =>
      captureFleet(load, path.join(dir, "hosts.json"), entries, `${FLEET_NET}.0/24`),
    async stop(engine, stopEngine) {
      try {
        if (engine && engine.state.size > 0) await engine.destroy().catch(() => undefined);
      } finally {
        try {
          await stopEngine();
        } finally {
          await lab.stop();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    },
  };
}

/** The lease range the fleet program gives each of three hosts: its own slice of `<net>.0/24`. */
export function fleetLeaseRanges(
  net: string,
): Array<{ start: string; end: string; leaseTime: string }> {
  return [
    { start: `${net}.10`, end: `${net}.29`, leaseTime: "1h" },
    { start: `${net}.30`, end: `${net}.49`, leaseTime: "1h" },
    { start: `${net}.50`, end: `${net}.69`, leaseTime: "1h" },
  ];
}

/** One entry of the hosts file the fleet program reads (HYPERVISOR_FLEET_HOSTS). */
export interface FleetHostEntry {
  name: string;
  connection: ReturnType<LabHost["connection"]>;
  uplink: string;
  leaseRange?: { start: string; end: string };
}

/** A hosts file entry for every lab host, each with uplink wan0. */
export function fleetHostEntries(lab: Lab): FleetHostEntry[] {
  return lab.hosts.map((h) => ({ name: h.name, connection: h.connection(), uplink: "wan0" }));
}

/**
 * The dependencies the fleet programs give their resources, which the capture must find: dnsmasq
 * and the tap use the bridge's name; the NAT rule uses nothing of another resource; the guest uses
 * the tap and declares dependsOn on dnsmasq and NAT. `program` names the program in the error for
 * a resource it should not have made.
 */
export function fleetDependenciesOf(program: string, name: string): string[] {
  const m = /^(h\d+)-(bridge|dhcp|nat|tap|guest)$/.exec(name);
  if (!m) throw new Error(`${program} made an unexpected resource ${name}`);
  const [, host, kind] = m;
  if (kind === "bridge" || kind === "nat") return [];
  if (kind === "guest") return [`${host}-dhcp`, `${host}-nat`, `${host}-tap`];
  return [`${host}-bridge`];
}

/**
 * Expects every captured resource of a fleet program to depend on what `fleetDependenciesOf`
 * says (a provider resource a resource names is not among them).
 */
export function expectFleetDependencies(
  program: string,
  specs: ReadonlyArray<{ name: string; dependsOn?: string[] }>,
): void {
  expect(specs.map((s) => [s.name, [...(s.dependsOn ?? [])].sort()])).toEqual(
    specs.map((s) => [s.name, fleetDependenciesOf(program, s.name).sort()]),
  );
}

/** FleetLab.capture, with the hosts file and the subnet given. */
async function captureFleet(
  load: () => Promise<unknown>,
  hostsFile: string,
  entries: FleetHostEntry[],
  subnet: string,
): Promise<CapturedResource[]> {
  writeFileSync(hostsFile, JSON.stringify(entries), { mode: 0o600 });
  const saved = process.env["HYPERVISOR_FLEET_HOSTS"];
  process.env["HYPERVISOR_FLEET_HOSTS"] = hostsFile;
  try {
    return await runProgramWithMocks(
      async () => {
        vi.resetModules();
        return await load();
      },
      {
        project: "fleet",
        stack: "test",
        config: { "fleet:subnet": subnet, "fleet:guestRunning": "false" },
      },
    );
  } finally {
    if (saved === undefined) delete process.env["HYPERVISOR_FLEET_HOSTS"];
    else process.env["HYPERVISOR_FLEET_HOSTS"] = saved;
  }
}

/** The SSH connections each lab host's sshd has accepted so far. */
export async function connectionsPerHost(lab: Lab): Promise<number[]> {
  return Promise.all(lab.hosts.map((h) => h.sshConnectionCount()));
}

/**
 * Counts the remote commands each lab host runs from the first call on: sshd logs "Starting
 * session" for each session (LogLevel VERBOSE), and a remote shell runs many commands in one, each
 * a line in /run/pulumi-hypervisor/trace-requests, which the first call creates (the switch).
 */
export async function commandsPerHost(lab: Lab): Promise<number[]> {
  return Promise.all(
    lab.hosts.map(async (h) => {
      const log = await readFile(h.sshdLogPath, "utf8");
      const sessions = log.split("\n").filter((l) => /\bStarting session: /.test(l)).length;
      const trace = await h.exec([
        "sh",
        "-c",
        // request lines only (a shell's start line is not a command)
        "f=/run/pulumi-hypervisor/trace-requests; mkdir -p /run/pulumi-hypervisor; touch $f; grep -vc ' shell$' $f || true",
      ]);
      expect(trace.code, trace.stderr).toBe(0);
      return sessions + Number(trace.stdout.trim());
    }),
  );
}

/** Runs argv on the host, expects it to succeed and returns its stdout. */
export async function run(h: LabHost, argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  expect(r.code, `${argv.join(" ")} on ${h.netns}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** The fleet's dnsmasq configuration on the host. */
export async function dnsmasqConf(h: LabHost): Promise<string> {
  return run(h, ["cat", "/etc/pulumi-hypervisor/dnsmasq/br-fleet/dnsmasq.conf"]);
}

/** `net` as a regular expression that matches it only (its dots escaped). */
const escapeDots = (net: string): string => net.replace(/\./g, "\\.");

/**
 * Expects the fleet's network on the host: br-fleet with the gateway `<net>.1/24` (net: the
 * subnet's first three octets, like "198.18.174"), fleet-tap0 on it, its masquerading nft table
 * and a dnsmasq handing out addresses in the subnet.
 */
export async function expectNetworkStamped(h: LabHost, net: string): Promise<void> {
  const addr = JSON.parse(await run(h, ["ip", "-j", "addr", "show", "br-fleet"])) as Array<{
    addr_info: Array<{ local: string; prefixlen: number; family: string }>;
  }>;
  expect(addr[0]?.addr_info.filter((a) => a.family === "inet")).toMatchObject([
    { local: `${net}.1`, prefixlen: 24 },
  ]);
  expect(await run(h, ["cat", "/sys/class/net/fleet-tap0/master/uevent"])).toMatch(
    /INTERFACE=br-fleet/,
  );
  expect(await run(h, ["nft", "list", "table", "ip", "pulumi_hv_br-fleet"])).toMatch(/masquerade/);
  expect(await dnsmasqConf(h)).toMatch(new RegExp(`dhcp-range=.*${escapeDots(net)}\\.\\d+`));
}

/**
 * Expects each lab host to have accepted at most `most` SSH connections since `before` (from
 * connectionsPerHost).
 */
export async function expectNewConnectionsAtMost(
  lab: Lab,
  before: number[],
  most: number,
): Promise<void> {
  const after = await connectionsPerHost(lab);
  after.forEach((n, i) => expect(n - (before[i] ?? 0)).toBeLessThanOrEqual(most));
}

/** A new lease range for the second of three lab hosts; see changeLeaseRangeOfSecondHost. */
export interface LeaseRangeChange {
  /** The host whose entry changes (the second). */
  host: LabHost;
  /** The hosts file entries with the new range. */
  entries: FleetHostEntry[];
  /**
   * To call once the entries are applied: expects the new range in that host's dnsmasq, which was
   * restarted (the lease file is kept), the other hosts' dnsmasq as it was, and remote commands
   * on that host only since the change was prepared (the others ran none at all).
   */
  expectAppliedThereOnly(): Promise<void>;
}

/**
 * Prepares a new lease range, `<net>.200`-`<net>.220`, in the second host's entry of the fleet
 * program applied by `engine`, noting what the other hosts look like and the commands run so far.
 */
export async function changeLeaseRangeOfSecondHost(
  lab: Lab,
  net: string,
  engine: EngineState,
): Promise<LeaseRangeChange> {
  const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
  const before = await Promise.all([dnsmasqConf(h1), dnsmasqConf(h3)]);
  const pidBefore = engine.state.get(`${h2.name}-dhcp`)?.outputs["pid"];
  const entries = fleetHostEntries(lab);
  entries[1] = { ...entries[1]!, leaseRange: { start: `${net}.200`, end: `${net}.220` } };
  const commandsBefore = await commandsPerHost(lab);
  return {
    host: h2,
    entries,
    async expectAppliedThereOnly() {
      const commandsAfter = await commandsPerHost(lab);
      const n = escapeDots(net);
      expect(await dnsmasqConf(h2)).toMatch(new RegExp(`dhcp-range=.*${n}\\.200,${n}\\.220`));
      expect(await Promise.all([dnsmasqConf(h1), dnsmasqConf(h3)])).toEqual(before);
      expect(commandsAfter[0]).toBe(commandsBefore[0]);
      expect(commandsAfter[2]).toBe(commandsBefore[2]);
      expect(commandsAfter[1]!).toBeGreaterThan(commandsBefore[1]!);
      expect(engine.state.get(`${h2.name}-dhcp`)?.outputs["pid"]).not.toBe(pidBefore);
    },
  };
}

/**
 * Expects a destroy (its `steps`, in order) to have deleted every host's guest before its
 * dnsmasq, NAT and tap, and the dnsmasq and the tap before its bridge (the NAT rule depends on
 * no other resource), the engine to hold no state any more, and no trace of the fleet left on any
 * host: no bridge, no tap, no nft table, no files.
 */
export async function expectFleetDestroyed(
  lab: Lab,
  engine: EngineState,
  steps: ReadonlyArray<{ name: string }>,
): Promise<void> {
  const order = steps.map((s) => s.name);
  for (const h of lab.hosts) {
    const at = (k: string): number => order.indexOf(`${h.name}-${k}`);
    for (const dep of ["dhcp", "nat", "tap"]) expect(at("guest")).toBeLessThan(at(dep));
    for (const dep of ["dhcp", "tap"]) expect(at(dep)).toBeLessThan(at("bridge"));
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
}

/** Drift made by hand on the third of three lab hosts; see driftThirdHostBridge. */
export interface BridgeDrift {
  /** The host with the drift (the third). */
  host: LabHost;
  /** To call after a refresh: expects the engine's state of that host's bridge to show the drift. */
  expectRefreshed(): void;
}

/** Adds the address `<net>.99/24` by hand to the third host's br-fleet. */
export async function driftThirdHostBridge(
  lab: Lab,
  net: string,
  engine: EngineState,
): Promise<BridgeDrift> {
  const h3 = lab.hosts[2]!;
  await run(h3, ["ip", "addr", "add", `${net}.99/24`, "dev", "br-fleet"]);
  return {
    host: h3,
    expectRefreshed() {
      expect(engine.state.get(`${h3.name}-bridge`)?.outputs["addresses"]).toEqual([
        `${net}.1/24`,
        `${net}.99/24`,
      ]);
    },
  };
}
