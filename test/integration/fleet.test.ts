// examples/fleet on three lab hosts: the program runs under mocks to capture its resources, which
// are then applied through the dynamic-provider plugin the way the engine applies them (steps at
// once, each when what it depends on is done; deletes in waves across the hosts). Proves
// that preview touches no host, that up stamps the same network on every host, that a change to
// one host's entry touches only that host, that refresh reports drift only where it is, and that
// destroy removes everything in reverse dependency order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lab } from "../../lab";
import type {
  DynamicProviderPlugin,
  Engine,
  ResourceSpec,
  StepRecord,
} from "../../lab/engine/engine";
import {
  FLEET_KINDS,
  FLEET_NET as NET,
  changeLeaseRangeOfSecondHost,
  connectionsPerHost,
  driftThirdHostBridge,
  expectFleetDestroyed,
  expectNewConnectionsAtMost,
  expectNetworkStamped,
  expectFleetDependencies,
  fleetHostEntries,
  fleetLeaseRanges,
  startFleetLab,
  type FleetHostEntry,
  type FleetLab,
} from "../support/fleet-checks";
import { startEngine } from "../../lab/harness";

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let fleet: FleetLab | undefined;

const hostEntries = (): FleetHostEntry[] => fleetHostEntries(lab);

/** Runs examples/fleet under mocks on the given hosts file entries; returns engine specs. */
async function program(entries: FleetHostEntry[]): Promise<ResourceSpec[]> {
  const captured = await fleet!.capture(() => import("../../examples/fleet/index"), entries);
  return captured.map((r) => ({
    type: r.type,
    name: r.name,
    inputs: r.inputs,
    dependsOn: r.dependsOn,
  }));
}

function ops(steps: StepRecord[]): string[] {
  return steps.map((s) => `${s.name} ${s.op}`).sort();
}

const allAs = (op: string): string[] =>
  lab.hosts.flatMap((h) => FLEET_KINDS.map((k) => `${h.name}-${k} ${op}`)).sort();

beforeAll(async () => {
  fleet = await startFleetLab("itfleet");
  lab = fleet.lab;
  ({ plugin, engine } = await startEngine());
});

afterAll(() => fleet?.stop(engine, async () => plugin?.stop()));

describe("examples/fleet on three lab hosts", () => {
  it("captures the same five resources per host from the hosts file", async () => {
    const specs = await program(hostEntries());
    expect(specs.map((s) => s.name).sort()).toEqual(
      lab.hosts.flatMap((h) => FLEET_KINDS.map((k) => `${h.name}-${k}`)).sort(),
    );
    const leases = specs
      .filter((s) => s.type.endsWith(":DnsmasqInstance"))
      .map((s) => s.inputs["dhcpRange"]);
    // each host gets its own slice of the shared subnet
    expect(leases).toEqual(fleetLeaseRanges(NET));
    // the order of the steps comes from the program: its outputs and dependsOn
    expectFleetDependencies("examples/fleet", specs);
  });

  it("preview plans a create of everything and changes no host", async () => {
    const connectionsBefore = await connectionsPerHost(lab);
    const { steps, failures } = await engine.preview(await program(hostEntries()));
    expect(failures).toEqual({});
    expect(ops(steps)).toEqual(allAs("create"));
    expect(await connectionsPerHost(lab)).toEqual(connectionsBefore);
    for (const h of lab.hosts) {
      expect((await h.exec(["ip", "link", "show", "br-fleet"])).code).not.toBe(0);
    }
  });

  it("up stamps the network onto every host with one connection each", async () => {
    const connectionsBefore = await connectionsPerHost(lab);
    // as `pulumi up` runs them: each step once what it depends on is done, beside the others
    const { steps } = await engine.up(await program(hostEntries()), { atOnce: true });
    expect(ops(steps)).toEqual(allAs("create"));
    // one pooled connection per host, kept through the pauses between its steps
    await expectNewConnectionsAtMost(lab, connectionsBefore, 1);
    for (const h of lab.hosts) {
      await expectNetworkStamped(h, NET);
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
    const change = await changeLeaseRangeOfSecondHost(lab, NET, engine);
    const { steps } = await engine.up(await program(change.entries), { atOnce: true });
    expect(steps.filter((s) => s.op !== "same").map((s) => `${s.name} ${s.op}`)).toEqual([
      `${change.host.name}-dhcp update`,
    ]);
    // only h2's dnsmasq changed (restarted with the new range); h1 and h3 ran no remote command
    await change.expectAppliedThereOnly();
  });

  it("refresh reports drift made by hand on one host, and only there", async () => {
    const drift = await driftThirdHostBridge(lab, NET, engine);
    const h3 = drift.host;
    const { steps } = await engine.refresh();
    const changed = steps.filter((s) => s.op !== "same");
    expect(changed.map((s) => `${s.name} ${s.op}`)).toEqual([`${h3.name}-bridge refresh-changed`]);
    drift.expectRefreshed();
  });

  it("destroy removes everything, dependents first, and leaves the hosts clean", async () => {
    const { steps } = await engine.destroy({ atOnce: true });
    expect(ops(steps)).toEqual(allAs("delete"));
    await expectFleetDestroyed(lab, engine, steps);
  });
});
