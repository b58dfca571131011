// Every example program runs under pulumi.runtime.setMocks and registers what its scenario needs.
import { describe, expect, it, vi } from "vitest";
import { runProgramWithMocks, type CapturedResource } from "../../lab/engine/mocks";

const KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nZXhhbXBsZS1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n";

async function runExample(
  dir: string,
  extra: Record<string, string> = {},
): Promise<CapturedResource[]> {
  const project = `hypervisor-${dir}`;
  const config: Record<string, string> = {
    [`${project}:host`]: "192.0.2.10",
    [`${project}:hostKey`]: "SHA256:2jc6l6oPr1E1nN0M5AC2V4gH3mD9kuBPlDYqgYOaFZY",
    [`${project}:sshPrivateKey`]: KEY,
  };
  for (const [k, v] of Object.entries(extra)) config[`${project}:${k}`] = v;
  // Under mocks, outputs that only the engine fills stay undefined and the runtime warns about
  // each exported one: those warnings, and only those, are expected.
  const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    const resources = await runProgramWithMocks(
      async () => {
        vi.resetModules();
        return (await import(`../../examples/${dir}/index.ts`)) as unknown;
      },
      { project, config, secretConfigKeys: [`${project}:sshPrivateKey`] },
    );
    for (const [message] of warn.mock.calls) {
      expect(String(message)).toMatch(
        /^warning: \[runtime\] Undefined value \(\w+\) will not show/,
      );
    }
    return resources;
  } finally {
    warn.mockRestore();
  }
}

// Registration order follows when each resource's inputs resolve, so compare sorted.
const summary = (rs: CapturedResource[]): string[] =>
  rs
    .map(
      (r) =>
        `${r.type.replace("pulumi-nodejs:dynamic/hypervisor:", "")} ${typeof r.inputs["name"] === "string" ? r.inputs["name"] : r.name}`,
    )
    .sort();

function expectSecretConnections(rs: CapturedResource[]): void {
  for (const r of rs) {
    expect(r.secretKeys, `${r.name}: connection is secret`).toContain("connection");
    expect(JSON.stringify(r.inputs["__provider"] ?? "")).not.toContain("ZXhhbXBsZS1rZXk");
  }
}

describe("examples under mocks", () => {
  it("Wi-Fi laptop with a bridged guest, static lease and NAT", async () => {
    const rs = await runExample("wifi-laptop", { installIso: "/var/lib/isos/win11.iso" });
    expect(summary(rs)).toEqual(
      ["Bridge qbr0", "DnsmasqInstance qbr0", "NatRule qbr0", "QemuGuest windows"].sort(),
    );
    const byType = (t: string) => rs.find((r) => r.type.endsWith(t));
    const [dhcp, nat, guest] = [byType("DnsmasqInstance"), byType("NatRule"), byType("QemuGuest")];
    expect(dhcp?.inputs["staticLeases"]).toEqual([
      { mac: "52:54:00:12:34:56", ip: "192.168.100.10", hostname: "windows" },
    ]);
    expect(nat?.inputs).toMatchObject({
      outInterface: "wlp2s0",
      masquerade: true,
      sourceCidr: "192.168.100.0/24",
    });
    expect(guest?.inputs).toMatchObject({
      cdrom: "/var/lib/isos/win11.iso",
      nics: [{ mac: "52:54:00:12:34:56", bridge: "qbr0" }],
    });
    expectSecretConnections(rs);
  });

  it("a host bridge enslaving the NIC, its address moving along", async () => {
    const rs = await runExample("host-bridge", { nic: "eno1", hostCidr: "192.0.2.10/24" });
    expect(summary(rs)).toEqual(["Bridge br0"].sort());
    expect(rs[0]?.inputs).toMatchObject({ ports: ["eno1"], addresses: ["192.0.2.10/24"] });
    expectSecretConnections(rs);
  });

  it("unprivileged guest through the bridge helper, one connection object for @pulumi/command too", async () => {
    const rs = await runExample("unprivileged");
    expect(summary(rs)).toEqual(
      [
        "Bridge virbr0",
        "DnsmasqInstance virbr0",
        "NatRule virbr0",
        "command:remote:Command bridge-helper-setuid",
        "QemuGuest session-guest",
      ].sort(),
    );
    const cmd = rs.find((r) => r.type === "command:remote:Command");
    const bridge = rs.find((r) => r.type.endsWith("Bridge"));
    // @pulumi/command fills in its defaults (port, user, dial limits); ours are the same values
    expect(cmd?.inputs["connection"]).toMatchObject(bridge?.inputs["connection"] as object);
    expect(bridge?.inputs).toMatchObject({ allowQemuBridgeHelper: true });
    expect(rs.find((r) => r.type.endsWith("QemuGuest"))?.inputs).toMatchObject({
      runAs: "alice",
      nics: [{ bridge: "virbr0" }],
    });
  });

  it("two guests with distinct MACs on taps on one private bridge", async () => {
    const rs = await runExample("two-guests");
    expect(summary(rs)).toEqual(
      [
        "Bridge br0",
        "TapDevice tap0",
        "QemuGuest guest1",
        "TapDevice tap1",
        "QemuGuest guest2",
      ].sort(),
    );
    const macs = rs
      .filter((r) => r.type.endsWith("QemuGuest"))
      .map((r) => (r.inputs["nics"] as Array<{ mac: string }>)[0]?.mac);
    expect(new Set(macs).size).toBe(2);
    expectSecretConnections(rs);
  });

  it("a routed tap with proxy ARP for Wi-Fi that cannot be bridged", async () => {
    const rs = await runExample("routed-wifi", { guestAddress: "192.168.1.77" });
    expect(summary(rs)).toEqual(["TapDevice tapr0", "QemuGuest routed-guest"].sort());
    expect(rs[0]?.inputs).toMatchObject({
      routed: { addresses: ["192.168.1.77"], proxyArpInterface: "wlp2s0" },
    });
    expectSecretConnections(rs);
  });
});
