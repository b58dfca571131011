// Plans that would cut the provider's own SSH session are refused before anything changes: a
// routed tap taking the SSH client's address, and a port forward of sshd's port on every
// interface (issue 11, lockouts 3 and 4).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProbe } from "../../provider/src/host/probe";
import { parseNatRuleState } from "../../provider/src/resources/nat-rule/observe";
import { planNatRule } from "../../provider/src/resources/nat-rule/plan";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { planTapDevice } from "../../provider/src/resources/tap-device/plan";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { tapProbeCapture } from "../support/tap-fixtures";

describe("a routed tap never takes the SSH client's address", () => {
  const host = (client: string) => ({
    ...parseTapDeviceState("vm5", tapProbeCapture("vm0")),
    sshClientAddress: client,
  });
  const d = (addresses: string[]) => TapDeviceInputs.parse({ name: "vm5", routed: { addresses } });

  it("refuses the client's IPv4 or IPv6 address, naming it and why", () => {
    expect(() => planTapDevice(d(["198.18.120.6", "198.18.7.9"]), host("198.18.7.9"))).toThrow(
      "routed.addresses: 198.18.7.9 is the address this SSH session comes from; a host route via vm5 would send the session's replies into the tap and cut the provider off. Remove it, or manage the host from another address",
    );
    expect(() => planTapDevice(d(["2001:DB8::9"]), host("2001:db8::9"))).toThrow(
      "routed.addresses: 2001:db8::9 is the address this SSH session comes from",
    );
  });

  it("routes other addresses as before", () => {
    expect(planTapDevice(d(["198.18.120.6"]), host("198.18.7.9")).map((s) => s.summary)).toContain(
      "add host route 198.18.120.6/32 via vm5",
    );
  });
});

describe("a port forward never takes sshd's port on every interface", () => {
  const state = (sshdPorts: string) =>
    parseNatRuleState(
      "guest",
      formatProbe([
        ["tools", "nft yes\niptables yes\n"],
        ["nft", ""],
        ["iptables", ""],
        ["sysctl", "net/ipv4/ip_forward 0 0\n"],
        ["sshd-ports", sshdPorts],
        ["systemd", "no\n"],
      ]),
    );
  const d = (forward: Record<string, unknown>) =>
    NatRuleInputs.parse({
      name: "guest",
      sourceCidr: "198.18.141.0/24",
      outInterface: "wan0",
      portForwards: [
        { protocol: "tcp", hostPort: 8080, destination: "198.18.141.10", destinationPort: 80 },
        { destination: "198.18.141.10", destinationPort: 22, ...forward },
      ],
    });

  it("refuses tcp to a port sshd listens on without inInterface", () => {
    expect(() => planNatRule(d({ protocol: "tcp", hostPort: 2222 }), state("22\n2222\n"))).toThrow(
      "portForwards[1]: sshd listens on tcp port 2222, and a forward of it without inInterface sends every login to the host on to 198.18.141.10, cutting the provider off; set inInterface to the interface the forward is for (not the one the host is managed through), or forward another port",
    );
  });

  it("allows it on one inbound interface, over udp, or on a port sshd does not use", () => {
    for (const f of [
      { protocol: "tcp", hostPort: 22, inInterface: "guest0" },
      { protocol: "udp", hostPort: 22 },
      { protocol: "tcp", hostPort: 2200 },
    ]) {
      expect(planNatRule(d(f), state("22\n")).length, JSON.stringify(f)).toBe(2);
    }
  });

  it("reads the ports sshd listens on from ss -Hltnp", () => {
    // The loop of nat-probe.sh over lines in the layout `ss -Hltnp` prints (sshd on 22 and 2222).
    const ss = [
      'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=412,fd=3))',
      'LISTEN 0      128          0.0.0.0:2222      0.0.0.0:*    users:(("sshd",pid=412,fd=5))',
      'LISTEN 0      4096       127.0.0.1:631       0.0.0.0:*    users:(("cupsd",pid=77,fd=7))',
      'LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=412,fd=4))',
    ].join("\n");
    const probe = readFileSync(
      join(__dirname, "../../provider/src/resources/nat-rule/nat-probe.sh"),
      "utf8",
    );
    const loop = /ss -Hltnp 2>\/dev\/null \| (while [\s\S]*?\n {2}done)/.exec(probe)?.[1] ?? "";
    expect(loop).toContain("read -r");
    const out = execFileSync("sh", ["-c", loop], { input: ss, encoding: "utf8" });
    // a port on both families comes twice; the parser keeps each once, in order
    expect(out).toBe("22\n2222\n22\n");
    expect(state(out).sshdPorts).toEqual([22, 2222]);
  });
});
