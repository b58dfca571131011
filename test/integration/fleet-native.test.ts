// examples/fleet/native.ts on three lab hosts: the program runs under mocks to capture its
// providers and resources, which are then applied through the native plugin, one plugin process
// per provider, the way the engine applies them. Proves that each host's resources go through
// its own provider, that preview changes no host and shows the commands, that a change to one
// host's entry runs commands on that host only, that refresh reports drift only where it is, and
// that destroy removes everything in reverse dependency order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../../lab";
import {
  FLEET_KINDS,
  FLEET_NET as NET,
  changeLeaseRangeOfSecondHost,
  commandsPerHost,
  connectionsPerHost,
  driftThirdHostBridge,
  expectFleetDestroyed,
  expectNewConnectionsAtMost,
  expectNetworkStamped,
  expectFleetDependencies,
  fleetHostEntries,
  fleetLeaseRanges,
  run,
  startFleetLab,
  type FleetHostEntry,
  type FleetLab,
} from "../support/fleet-checks";
import type { CapturedResource } from "../../lab/engine/mocks";
import {
  NativeEngine,
  secret,
  type NativeResourceSpec,
  type NativeStepRecord,
} from "../../lab/engine/native-engine";
import { privateKeyBody } from "../support/private-key";

let lab: Lab;
let engine: NativeEngine;
let fleet: FleetLab | undefined;
/** The configuration each provider was last configured with (JSON), by provider name. */
const configured = new Map<string, string>();

const hostEntries = (): FleetHostEntry[] => fleetHostEntries(lab);

/** Returns the provider's name from a reference `<urn>::<id>` (the urn's type is `parent$type`). */
function providerName(ref: string | undefined): string {
  const m = /[:$]pulumi:providers:hypervisor::([^:]+)::[^:]+$/.exec(ref ?? "");
  if (!m?.[1]) throw new Error(`not a hypervisor provider reference: ${String(ref)}`);
  return m[1];
}

/** Runs examples/fleet/native.ts under mocks on the given hosts file entries. */
async function capture(entries: FleetHostEntry[]): Promise<CapturedResource[]> {
  return fleet!.capture(() => import("../../examples/fleet/native"), entries);
}

/**
 * Runs the program and (re)configures the providers it declares whose configuration is new or
 * changed, as the engine does before their resources; returns the resources as engine specs.
 */
async function program(entries: FleetHostEntry[]): Promise<NativeResourceSpec[]> {
  const captured = await capture(entries);
  for (const p of captured.filter((r) => r.type === "pulumi:providers:hypervisor")) {
    const config = JSON.stringify(p.inputs);
    if (configured.get(p.name) === config) continue;
    await engine.provider(p.name, { connection: secret(p.inputs["connection"]) });
    configured.set(p.name, config);
  }
  return captured
    .filter((r) => r.type.startsWith("hypervisor:index:"))
    .map((r) => ({
      type: r.type,
      name: r.name,
      provider: providerName(r.provider),
      inputs: r.inputs,
      dependsOn: r.dependsOn,
    }));
}

/** "<name> <op> via <provider>" for every step, sorted. */
function ops(steps: NativeStepRecord[]): string[] {
  return steps.map((s) => `${s.name} ${s.op} via ${s.provider}`).sort();
}

const allAs = (op: string): string[] =>
  lab.hosts.flatMap((h) => FLEET_KINDS.map((k) => `${h.name}-${k} ${op} via hv-${h.name}`)).sort();

/** What a host's networking and provider-owned files look like (to prove nothing changed). */
async function snapshot(h: LabHost): Promise<string> {
  return run(h, [
    "sh",
    "-c",
    "ip -br link; ip -br addr; nft list ruleset; " +
      "find /etc/pulumi-hypervisor /run/pulumi-hypervisor /var/lib/pulumi-hypervisor 2>/dev/null; true",
  ]);
}

beforeAll(async () => {
  fleet = await startFleetLab("itfleetnative");
  lab = fleet.lab;
  engine = new NativeEngine();
});

afterAll(() => fleet?.stop(engine, async () => engine?.stop()));

describe("examples/fleet/native.ts on three lab hosts", () => {
  it("declares one provider per host holding its connection; resources name it instead", async () => {
    const captured = await capture(hostEntries());
    const providers = captured.filter((r) => r.type === "pulumi:providers:hypervisor");
    expect(providers.map((p) => p.name).sort()).toEqual(lab.hosts.map((h) => `hv-${h.name}`));
    for (const h of lab.hosts) {
      const p = providers.find((x) => x.name === `hv-${h.name}`);
      expect(p?.secretKeys).toEqual(["connection"]);
      expect(p?.inputs["connection"]).toEqual(h.connection());
    }
    const resources = captured.filter((r) => r.type !== "pulumi:providers:hypervisor");
    expect(resources.map((r) => `${r.type} ${r.name}`).sort()).toEqual(
      lab.hosts
        .flatMap((h) =>
          [
            ["Bridge", "bridge"],
            ["DnsmasqInstance", "dhcp"],
            ["NatRule", "nat"],
            ["TapDevice", "tap"],
            ["QemuGuest", "guest"],
          ].map(([t, k]) => `hypervisor:index:${t} ${h.name}-${k}`),
        )
        .sort(),
    );
    for (const r of resources) {
      expect(providerName(r.provider), r.name).toBe(`hv-${r.name.split("-")[0]}`);
      expect(r.inputs["connection"], r.name).toBeUndefined();
      expect(r.secretKeys, r.name).toEqual([]);
    }
    // each host gets its own slice of the shared subnet
    expect(
      lab.hosts.map((h) => resources.find((r) => r.name === `${h.name}-dhcp`)?.inputs["dhcpRange"]),
    ).toEqual(fleetLeaseRanges(NET));
    // the order of the steps comes from the program: its outputs and dependsOn
    expectFleetDependencies("examples/fleet/native.ts", resources);
  });

  it("preview plans a create of everything with its commands and changes no host", async () => {
    const before = await Promise.all(lab.hosts.map(snapshot));
    const connectionsBefore = await connectionsPerHost(lab);
    const { steps, failures } = await engine.preview(await program(hostEntries()));
    expect(failures).toEqual({});
    expect(ops(steps)).toEqual(allAs("create"));
    const planned = (name: string): string[] | undefined =>
      steps.find((s) => s.name === name)?.plannedSteps;
    for (const [k, h] of lab.hosts.entries()) {
      expect(planned(`${h.name}-bridge`)).toEqual([
        `create bridge br-fleet: ip link add name br-fleet address 52:54:00:fd:00:0${k + 1} type bridge stp_state 0`,
        "mark br-fleet as created by pulumi-hypervisor (ifalias): ip link set dev br-fleet alias pulumi-hypervisor",
        "bring br-fleet up: ip link set dev br-fleet up",
        `add address ${NET}.1/24 to br-fleet: ip addr add ${NET}.1/24 dev br-fleet`,
      ]);
      expect(planned(`${h.name}-nat`)?.[0]).toMatch(
        /^create nft table ip pulumi_hv_br-fleet with 3 rules: nft -f - < stdin \(\d+ bytes\)$/,
      );
      expect(planned(`${h.name}-guest`)?.join("\n")).toMatch(
        /sh qemu-create-disk.sh \/var\/lib\/pulumi-hypervisor\/qemu\/fleet-guest\/root\.qcow2 qcow2 1G/,
      );
      // The tap and dnsmasq need the bridge this same update creates: no steps yet, and the tap's
      // status says why, as no warning (the bridge's own preview showed its create).
      expect(planned(`${h.name}-tap`)).toBeUndefined();
      expect(planned(`${h.name}-dhcp`)).toBeUndefined();
      const why = `tap device "fleet-tap0" on root@${h.address}:22: preview without steps: "br-fleet" is not on the host yet; this update creates it`;
      expect(engine.logs()).toContain(`pulumi-hypervisor: ${why}`);
      expect(
        (await engine.engineLog()).filter((m) => m.message === why).map((m) => m.severity),
      ).toEqual(["info"]);
    }
    // six statuses (a tap and a dnsmasq a host), none of them a warning
    const withoutSteps = (await engine.engineLog()).filter((m) =>
      m.message.includes("preview without steps"),
    );
    expect(withoutSteps.map((m) => `${m.severity} ${m.ephemeral}`)).toEqual(
      Array.from({ length: 2 * lab.hosts.length }, () => "info true"),
    );
    // Reading a host for its plan opens at most its one pooled connection.
    await expectNewConnectionsAtMost(lab, connectionsBefore, 1);
    expect(await Promise.all(lab.hosts.map(snapshot))).toEqual(before);
  });

  it("warns when a preview's plan needs a link that no preview of the update creates", async () => {
    const h = lab.hosts[0]!;
    const before = (await engine.engineLog()).length;
    const { failures } = await engine.preview([
      {
        type: "hypervisor:index:TapDevice",
        name: "lonely-tap",
        provider: `hv-${h.name}`,
        inputs: { name: "hvl-tap0", bridge: "br-none" },
      },
    ]);
    expect(failures).toEqual({});
    expect((await engine.engineLog()).slice(before).map((m) => [m.severity, m.message])).toEqual([
      [
        "warning",
        `tap device "hvl-tap0" on root@${h.address}:22: preview without steps: bridge "br-none" does not exist on the host`,
      ],
    ]);
  });

  it("up stamps the network onto every host through its provider, one connection each", async () => {
    const connectionsBefore = await connectionsPerHost(lab);
    const { steps } = await engine.up(await program(hostEntries()));
    expect(ops(steps)).toEqual(allAs("create"));
    // one pooled connection per plugin, kept through the pauses between its steps
    await expectNewConnectionsAtMost(lab, connectionsBefore, 1);
    for (const h of lab.hosts) {
      await expectNetworkStamped(h, NET);
      expect(engine.state.get(`${h.name}-guest`)?.outputs["status"]).toBe("stopped");
    }
    // The connection lives in the providers only: no resource state holds it.
    const stateText = JSON.stringify([...engine.state.values()]);
    expect(stateText).not.toContain('"connection"');
    for (const h of lab.hosts) expect(stateText).not.toContain(privateKeyBody(h));
  });

  it("a second preview has no changes and runs nothing on any host", async () => {
    const connectionsBefore = await connectionsPerHost(lab);
    const commandsBefore = await commandsPerHost(lab);
    const { steps, failures } = await engine.preview(await program(hostEntries()));
    expect(failures).toEqual({});
    expect(ops(steps)).toEqual(allAs("same"));
    expect(await connectionsPerHost(lab)).toEqual(connectionsBefore);
    expect(await commandsPerHost(lab)).toEqual(commandsBefore);
  });

  it("a new lease range for one host runs commands on that host only", async () => {
    const change = await changeLeaseRangeOfSecondHost(lab, NET, engine);
    const h2 = change.host;

    const preview = await engine.preview(await program(change.entries));
    const changed = preview.steps.filter((s) => s.op !== "same");
    expect(ops(changed)).toEqual([`${h2.name}-dhcp update via hv-${h2.name}`]);
    expect(changed[0]?.diff?.detailedDiff).toEqual({ dhcpRange: "UPDATE" });
    expect(changed[0]?.plannedSteps?.join("\n")).toMatch(/dnsmasq\.conf/);

    const { steps } = await engine.up(await program(change.entries));
    expect(ops(steps.filter((s) => s.op !== "same"))).toEqual([
      `${h2.name}-dhcp update via hv-${h2.name}`,
    ]);
    // only h2's dnsmasq changed (restarted with the new range); the providers of h1 and h3 ran no
    // remote command at all, neither in preview nor in up
    await change.expectAppliedThereOnly();
  });

  it("refresh reports drift made by hand on one host, and only there", async () => {
    const drift = await driftThirdHostBridge(lab, NET, engine);
    const h3 = drift.host;
    const { steps } = await engine.refresh();
    expect(steps).toHaveLength(15);
    expect(ops(steps.filter((s) => s.op !== "same"))).toEqual([
      `${h3.name}-bridge refresh-changed via hv-${h3.name}`,
    ]);
    drift.expectRefreshed();
  });

  it("destroy removes everything, dependents first, and leaves the hosts clean", async () => {
    const { steps } = await engine.destroy();
    expect(ops(steps)).toEqual(allAs("delete"));
    await expectFleetDestroyed(lab, engine, steps);
    // No plugin logged a credential.
    const logs = engine.logs();
    expect(logs).toContain("pulumi-hypervisor:");
    for (const h of lab.hosts) expect(logs).not.toContain(privateKeyBody(h));
  });
});
