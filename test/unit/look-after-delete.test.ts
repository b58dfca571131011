// The look after a delete asks only what a delete's plan reads (issue 12: each process costs the
// host CPU): a tap alone, not its bridge, uplink or routes' clash check; a bridge without its ports
// or the route to the SSH client; no served interface for a DnsmasqInstance; a NatRule's table
// looked for in the list of tables first. Every other look asks as before.
import { describe, expect, it } from "vitest";
import type { ObserveContext } from "../../provider/src/resource";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { BridgeInputs } from "../../provider/src/resources/bridge/schema";
import { dnsmasqInstanceModule } from "../../provider/src/resources/dnsmasq-instance";
import { DnsmasqInstanceInputs } from "../../provider/src/resources/dnsmasq-instance/schema";
import { natRuleModule } from "../../provider/src/resources/nat-rule";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";

const ctx: ObserveContext = { host: "root@h:22", sshClientAddress: "198.18.0.9" };
const look: ObserveContext = { ...ctx, lookOnly: true };
const gone: ObserveContext = { ...look, after: "delete" };

describe("the look after a delete", () => {
  it("ask a routed tap's probe for the tap alone, its values only while it or a claim is left", () => {
    const inputs = TapDeviceInputs.parse({
      name: "t0",
      routed: { addresses: ["198.18.1.5"], proxyArpInterface: "eth0" },
    });
    // the probe's LINKS, VALUES and ROUTES (its 11th to 13th arguments)
    const asked = (c: ObserveContext) => tapDeviceModule.probe(inputs, c).call.args.slice(10, 13);
    expect(asked(look)).toEqual(["t0 eth0", "always", "tap 198.18.1.5"]);
    expect(asked(gone)).toEqual(["t0", "if-tap", "tap"]);
  });

  it("ask a bridge's probe for the bridge alone: no port, no route to the SSH client", () => {
    const inputs = BridgeInputs.parse({ name: "br0", ports: ["eth1"] });
    const asked = (c: ObserveContext) => bridgeModule.probe(inputs, c).call.args.slice(0, 3);
    expect(asked(look)).toEqual(["198.18.0.9", "br0", "eth1"]);
    expect(asked(gone)).toEqual(["", "br0", ""]);
  });

  it("ask a DnsmasqInstance's probe for no interface's addresses", () => {
    const inputs = DnsmasqInstanceInputs.parse({
      name: "guests",
      interface: "br0",
      subnet: "198.18.2.0/24",
      dhcpRange: { start: "198.18.2.100", end: "198.18.2.150", leaseTime: "1h" },
    });
    const iface = (c: ObserveContext) => dnsmasqInstanceModule.probe(inputs, c).call.args[10];
    expect([iface(look), iface(gone)]).toEqual(["br0", ""]);
  });

  it("have a NatRule's probe expect its table absent, as a create's first look does", () => {
    const inputs = NatRuleInputs.parse({
      name: "guests",
      sourceCidr: "198.18.3.0/24",
      outInterface: "eth0",
      masquerade: true,
    });
    const expects = (c: ObserveContext) => natRuleModule.probe(inputs, c).call.args[2];
    expect([expects(look), expects({ ...ctx, creating: true }), expects(gone)]).toEqual([
      "present",
      "absent",
      "absent",
    ]);
  });
});
