import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Lifecycle } from "../../provider/src/lifecycle";
import { natRuleModule } from "../../provider/src/resources/nat-rule";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";
import { scriptArgv } from "../../provider/src/host/script";
import {
  decodeIptablesRule,
  parseIptablesSave,
  renderIptablesRestore,
  splitIptablesLine,
} from "../../provider/src/resources/nat-rule/iptables";
import { parseNftTable, renderNftRuleset } from "../../provider/src/resources/nat-rule/nftables";
import {
  FAILED,
  observeCall,
  parseNatRuleState,
} from "../../provider/src/resources/nat-rule/observe";
import { planNatRule, resolveBackend } from "../../provider/src/resources/nat-rule/plan";
import { rulesFor } from "../../provider/src/resources/nat-rule/rules";
import { NatRuleInputs, type NatRuleState } from "../../provider/src/resources/nat-rule/schema";
import { sysctlCall } from "../../provider/src/sysctl";

import { guest, guestNat } from "../fixtures/nft-capture-inputs";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");

/** The probe's output as a host prints it, from real captures of each part; without systemd. */
function probe(
  o: {
    nft?: string;
    iptables?: string;
    tools?: string;
    ipForward?: string;
    sshdPorts?: string;
  } = {},
): string {
  return formatProbe([
    ["tools", o.tools ?? "nft yes\niptables yes\n"],
    ["nft", o.nft ?? ""],
    ["iptables", o.iptables ?? ""],
    ["sysctl", o.ipForward ?? "net/ipv4/ip_forward 1 1\n"],
    ["sshd-ports", o.sshdPorts ?? ""],
    ["systemd", "no\n"],
  ]);
}
const state = (name: string, o: Parameters<typeof probe>[0] = {}): NatRuleState =>
  parseNatRuleState(name, probe(o));

// What renderNftRuleset produces for guest-nat, and what nft-capture.sh applies to make the captures.
const GUEST_NAT_NFT = fixture("nft-ruleset-guest-nat.nft");

describe("rendering", () => {
  it("renders one atomic nft transaction: declare, delete, define", () => {
    expect(renderNftRuleset("guest-nat", rulesFor(guestNat))).toBe(GUEST_NAT_NFT);
  });

  it("renders iptables-restore input in the form iptables-save prints back", () => {
    const text = renderIptablesRestore("guest", rulesFor(guest), {
      missing: ["postrouting", "prerouting", "forward"],
      surplus: [],
    });
    expect(text).toBe(
      [
        "*nat",
        ":PHV-guest-POST - [0:0]",
        ":PHV-guest-PRE - [0:0]",
        "-A PHV-guest-POST -s 198.18.141.0/24 -o wan0 -j SNAT --to-source 198.19.41.2",
        '-I POSTROUTING 1 -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-POST',
        '-I PREROUTING 1 -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-PRE',
        "COMMIT",
        "*filter",
        ":PHV-guest-FWD - [0:0]",
        '-I FORWARD 1 -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-FWD',
        "COMMIT",
        "",
      ].join("\n"),
    );
    // every rule line it writes is a line iptables-save printed back (real capture)
    const saved = fixture("iptables-save.txt").split("\n");
    const natRules = renderIptablesRestore("guest-nat", rulesFor(guestNat), {
      missing: [],
      surplus: [],
    })
      .split("\n")
      .filter((l) => l.startsWith("-A "));
    expect(natRules).toHaveLength(9);
    for (const line of natRules) expect(saved).toContain(line);
  });
});

describe("parsing real nft -j output", () => {
  it("decodes every rule it wrote back into the same rules", () => {
    const s = state("guest-nat", { nft: fixture("nft-j-list-table.json") });
    expect(s.nft?.chains.postrouting?.rules).toEqual(
      rulesFor(guestNat).postrouting.map((rule) => ({ rule })),
    );
    expect(s.nft?.chains.prerouting?.rules).toEqual(
      rulesFor(guestNat).prerouting.map((rule) => ({ rule })),
    );
    expect(s.nft?.chains.forward?.rules).toEqual(
      rulesFor(guestNat).forward.map((rule) => ({ rule })),
    );
    expect(s.nft?.extras).toEqual([]);
    expect(planNatRule(guestNat, s)).toEqual([]);
  });

  it("decodes snat", () => {
    const s = state("guest", { nft: fixture("nft-j-list-table-snat.json") });
    expect(s.nft?.chains.postrouting?.rules).toEqual([
      { rule: { oif: "wan0", saddr: "198.18.141.0/24", action: "snat", to: "198.19.41.2" } },
    ]);
    expect(planNatRule(guest, s)).toEqual([]);
  });

  it("takes a rule with anything outside its vocabulary (a counter) as foreign", () => {
    const s = state("guest-nat", { nft: fixture("nft-j-list-table-drifted.json") });
    expect(s.nft?.chains.forward?.rules[0]).toEqual({
      foreign:
        'forward: [{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"198.18.140.66"}},{"counter":{"packets":0,"bytes":0}},{"drop":null}]',
    });
  });

  it("fails loudly on output it does not understand", () => {
    expect(() =>
      parseNftTable(
        '{"nftables": [{"table": {}}, {"chain": {"family": "ip", "table": "t", "name": 3}}]}',
        "t",
      ),
    ).toThrow(
      "unexpected output of nft -j list table ip t: name: Invalid input: expected string, received number",
    );
    expect(() => parseNftTable('{"nftables": []}', "t")).toThrow(
      "unexpected output of nft -j list table ip t: no table t in it",
    );
    expect(() => parseNftTable("Error: oops", "t")).toThrow(
      /unexpected output of nft -j list table ip t/,
    );
  });
});

describe("planNatRule with nftables", () => {
  it("creates the table, then claims ip_forward", () => {
    expect(
      planNatRule(guestNat, state("guest-nat", { ipForward: "net/ipv4/ip_forward 0 0\n" })),
    ).toEqual([
      {
        summary: "create nft table ip pulumi_hv_guest-nat with 9 rules",
        argv: ["nft", "-f", "-"],
        stdin: GUEST_NAT_NFT,
      },
      {
        summary: "set net.ipv4.ip_forward=1 (claimed by natrule-guest-nat)",
        script: sysctlCall("claim", "net/ipv4/ip_forward", "natrule-guest-nat", "1"),
      },
    ]);
  });

  it("re-claims ip_forward when someone switched it off", () => {
    const s = state("guest-nat", {
      nft: fixture("nft-j-list-table.json"),
      ipForward: "net/ipv4/ip_forward 0 1\n",
    });
    expect(planNatRule(guestNat, s).map((x) => x.summary)).toEqual([
      "set net.ipv4.ip_forward=1 (claimed by natrule-guest-nat)",
    ]);
  });

  it("restores a table flushed by hand in one transaction, and reports the drift as inputs", () => {
    const s = state("guest", { nft: fixture("nft-j-list-table-flushed.json") });
    expect(planNatRule(guest, s)).toEqual([
      {
        summary:
          'replace nft table ip pulumi_hv_guest in one transaction (+ postrouting: oifname "wan0" ip saddr 198.18.141.0/24 snat to 198.19.41.2)',
        argv: ["nft", "-f", "-"],
        stdin: renderNftRuleset("guest", rulesFor(guest)),
      },
    ]);
    expect(natRuleModule.exists(s)).toBe(true);
    expect(natRuleModule.observedInputs(s, guest)).toEqual({
      name: "guest",
      sourceCidr: "198.18.141.0/24",
      outInterface: "wan0",
      masquerade: false,
      snatTo: null,
      forward: false,
      portForwards: [],
      backend: "auto",
      persistence: "auto",
    });
    // the lifecycle parses observed inputs again on read and delete: they must stay valid
    expect(NatRuleInputs.safeParse(natRuleModule.observedInputs(s, guest)).success).toBe(true);
  });

  it("reports a snat turned into a masquerade by hand as valid inputs", () => {
    const t = JSON.parse(fixture("nft-j-list-table-snat.json")) as {
      nftables: Array<Record<string, { expr?: unknown[] }>>;
    };
    const rule = t.nftables.find((o) => o["rule"] !== undefined)?.["rule"];
    rule?.expr?.splice(-1, 1, { masquerade: null });
    const observed = natRuleModule.observedInputs(
      state("guest", { nft: JSON.stringify(t) }),
      guest,
    );
    expect(observed).toMatchObject({ masquerade: true, snatTo: null });
    expect(NatRuleInputs.safeParse(observed).success).toBe(true);
  });

  it("lists hand edits inside its own table and replaces them all", () => {
    const s = state("guest-nat", { nft: fixture("nft-j-list-table-drifted.json") });
    const steps = planNatRule(guestNat, s);
    expect(steps).toHaveLength(1);
    expect(steps[0]?.summary).toBe(
      "replace nft table ip pulumi_hv_guest-nat in one transaction (" +
        '+ postrouting: oifname "wan0" ip saddr 198.18.140.0/24 masquerade; ' +
        "chain forward is type filter hook forward priority 0 policy drop, not type filter hook forward priority 0 policy accept; " +
        '- forward: [{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"198.18.140.66"}},{"counter":{"packets":0,"bytes":0}},{"drop":null}] (not written by the provider); ' +
        "- chain extra (not written by the provider))",
    );
    expect(natRuleModule.outputs(s)).toEqual({
      table: "pulumi_hv_guest-nat",
      activeBackend: "nftables",
      unmanagedRules: [
        "chain forward is type filter hook forward priority 0 policy drop, not type filter hook forward priority 0 policy accept",
        'forward: [{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"198.18.140.66"}},{"counter":{"packets":0,"bytes":0}},{"drop":null}]',
        "chain extra",
      ],
    });
    // the masquerade is gone; the port forwards and forward accepts are still intact
    expect(natRuleModule.observedInputs(s, guestNat)).toMatchObject({
      masquerade: false,
      forward: true,
      portForwards: guestNat.portForwards,
    });
  });

  it("reports a port forward whose accept was removed as missing", () => {
    const t = JSON.parse(fixture("nft-j-list-table.json")) as {
      nftables: Array<Record<string, { chain?: string; expr?: unknown[] }>>;
    };
    const udpAccept = t.nftables.findIndex((o) =>
      JSON.stringify(o["rule"]?.expr ?? "").includes('"sport"}},"right":53'),
    );
    expect(udpAccept).toBeGreaterThan(0);
    t.nftables.splice(udpAccept, 1);
    const s = state("guest-nat", { nft: JSON.stringify(t) });
    expect(natRuleModule.observedInputs(s, guestNat)).toMatchObject({
      portForwards: [guestNat.portForwards[0]],
    });
    expect(planNatRule(guestNat, s)[0]?.summary).toBe(
      "replace nft table ip pulumi_hv_guest-nat in one transaction (+ forward: ip saddr 198.18.140.11 udp sport 53 ct status dnat accept)",
    );
  });

  it("applies a changed input as one atomic replace", () => {
    const s = state("guest-nat", { nft: fixture("nft-j-list-table.json") });
    const next = NatRuleInputs.parse({ ...guestNat, portForwards: [guestNat.portForwards[0]] });
    expect(planNatRule(next, s)).toEqual([
      {
        summary:
          "replace nft table ip pulumi_hv_guest-nat in one transaction (" +
          "- prerouting: fib daddr type local udp dport 5353 dnat to 198.18.140.11:53; " +
          "- forward: ip daddr 198.18.140.11 udp dport 53 ct status dnat accept; " +
          "- forward: ip saddr 198.18.140.11 udp sport 53 ct status dnat accept)",
        argv: ["nft", "-f", "-"],
        stdin: renderNftRuleset("guest-nat", rulesFor(next)),
      },
    ]);
  });

  it("deletes: releases ip_forward first, then its table only", () => {
    expect(
      planNatRule(undefined, state("guest-nat", { nft: fixture("nft-j-list-table.json") })),
    ).toEqual([
      {
        summary:
          "release net.ipv4.ip_forward (claimed by natrule-guest-nat); restore it if nothing else needs it",
        script: sysctlCall("release", "net/ipv4/ip_forward", "natrule-guest-nat"),
      },
      {
        summary: "delete nft table ip pulumi_hv_guest-nat",
        argv: ["nft", "delete", "table", "ip", "pulumi_hv_guest-nat"],
      },
    ]);
    // gone already, no claim: nothing to do; not claimed: ip_forward is not touched
    expect(
      planNatRule(undefined, state("guest-nat", { ipForward: "net/ipv4/ip_forward 1 0\n" })),
    ).toEqual([]);
    expect(natRuleModule.exists(state("guest-nat"))).toBe(false);
  });
});

describe("iptables backend", () => {
  const ipt = (name: string, backend: "iptables" | "auto" = "iptables") =>
    state(name, {
      iptables: fixture("iptables-save.txt"),
      tools: backend === "auto" ? "nft yes\niptables yes\n" : "nft no\niptables yes\n",
    });

  it("finds exactly its own chains and jumps, not another rule's with a longer name", () => {
    const s = ipt("guest");
    expect(s.iptables?.chains.postrouting?.rules).toEqual([
      { rule: { saddr: "198.18.141.0/24", oif: "wan0", action: "snat", to: "198.19.41.2" } },
    ]);
    expect(s.iptables?.jumps.map((j) => j.line)).toEqual([
      '-A FORWARD -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-FWD',
      '-A PREROUTING -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-PRE',
      '-A POSTROUTING -m comment --comment "pulumi-hypervisor natrule guest" -j PHV-guest-POST',
    ]);
    expect(planNatRule(NatRuleInputs.parse({ ...guest, backend: "iptables" }), s)).toEqual([]);
  });

  it("removes a surplus jump without touching anything else", () => {
    const s = ipt("guest-nat");
    expect(s.iptables?.chains.forward?.problems).toEqual([
      "chain PHV-guest-nat-FWD is jumped to 2 times from FORWARD",
    ]);
    const steps = planNatRule(NatRuleInputs.parse({ ...guestNat, backend: "iptables" }), s);
    expect(steps.map((x) => x.summary)).toEqual([
      "redefine iptables chains PHV-guest-nat-* with iptables-restore --noflush (chain PHV-guest-nat-FWD is jumped to 2 times from FORWARD)",
    ]);
    const stdin = "stdin" in steps[0]! ? (steps[0].stdin ?? "") : "";
    expect(stdin.split("\n").filter((l) => /^-[ID] /.test(l))).toEqual([
      '-D FORWARD -m comment --comment "pulumi-hypervisor natrule guest-nat" -j PHV-guest-nat-FWD',
    ]);
  });

  it("auto keeps the backend already holding the rule", () => {
    expect(resolveBackend("auto", ipt("guest", "auto"))).toBe("iptables");
    expect(resolveBackend("auto", state("guest"))).toBe("nftables");
  });

  it("deletes only its own jumps and chains", () => {
    expect(planNatRule(undefined, ipt("guest-nat"))).toEqual([
      {
        summary:
          "release net.ipv4.ip_forward (claimed by natrule-guest-nat); restore it if nothing else needs it",
        script: sysctlCall("release", "net/ipv4/ip_forward", "natrule-guest-nat"),
      },
      {
        summary: "delete iptables chains PHV-guest-nat-* and the provider's jumps to them",
        argv: ["iptables-restore", "--noflush"],
        stdin: [
          "*nat",
          '-D PREROUTING -m comment --comment "pulumi-hypervisor natrule guest-nat" -j PHV-guest-nat-PRE',
          '-D POSTROUTING -m comment --comment "pulumi-hypervisor natrule guest-nat" -j PHV-guest-nat-POST',
          "-F PHV-guest-nat-POST",
          "-X PHV-guest-nat-POST",
          "-F PHV-guest-nat-PRE",
          "-X PHV-guest-nat-PRE",
          "COMMIT",
          "*filter",
          '-D FORWARD -m comment --comment "pulumi-hypervisor natrule guest-nat" -j PHV-guest-nat-FWD',
          '-D FORWARD -m comment --comment "pulumi-hypervisor natrule guest-nat" -j PHV-guest-nat-FWD',
          "-F PHV-guest-nat-FWD",
          "-X PHV-guest-nat-FWD",
          "COMMIT",
          "",
        ].join("\n"),
      },
    ]);
  });

  it("moves a rule between backends: new rules first, then the old ones go", () => {
    const s = state("guest", { iptables: fixture("iptables-save.txt") });
    expect(
      planNatRule(NatRuleInputs.parse({ ...guest, backend: "nftables" }), s).map((x) => x.summary),
    ).toEqual([
      "create nft table ip pulumi_hv_guest with 1 rule",
      "delete iptables chains PHV-guest-* and the provider's jumps to them",
    ]);
  });

  it("reads iptables-save words and refuses what it did not write", () => {
    expect(splitIptablesLine('-A FORWARD -m comment --comment "a \\"b\\" c" -j X')).toEqual([
      "-A",
      "FORWARD",
      "-m",
      "comment",
      "--comment",
      'a "b" c',
      "-j",
      "X",
    ]);
    expect(decodeIptablesRule(["-s", "198.18.140.0/24", "-o", "wan0", "-j", "MASQUERADE"])).toEqual(
      { saddr: "198.18.140.0/24", oif: "wan0", action: "masquerade" },
    );
    expect(decodeIptablesRule(["!", "-s", "198.18.140.0/24", "-j", "MASQUERADE"])).toBeUndefined();
    expect(decodeIptablesRule(["-s", "198.18.140.0/24", "-j", "DROP"])).toBeUndefined();
    expect(decodeIptablesRule(["-m", "limit", "--limit", "1/s", "-j", "ACCEPT"])).toBeUndefined();
    expect(parseIptablesSave("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", "guest")).toBeUndefined();
  });
});

describe("backend choice", () => {
  it("says what is missing when a backend cannot be used", () => {
    const noNft = state("g", { tools: "nft no\niptables yes\n" });
    expect(() =>
      planNatRule(NatRuleInputs.parse({ ...guest, backend: "nftables" }), noNft),
    ).toThrow(
      "backend nftables: nft is not installed on the host; install it or set backend to iptables or auto",
    );
    expect(resolveBackend("auto", noNft)).toBe("iptables");
    expect(() => resolveBackend("auto", state("g", { tools: "nft no\niptables no\n" }))).toThrow(
      "backend auto: neither backend is usable (nftables: nft is not installed on the host; iptables: iptables-save/iptables-restore is not installed on the host); install nftables",
    );
    const broken = state("g", {
      iptables: `${FAILED} iptables-save v1.8.9 (nf_tables): table \`filter' is incompatible, use 'nft' tool.\n`,
    });
    expect(broken.iptablesError).toBe(
      "iptables-save v1.8.9 (nf_tables): table `filter' is incompatible, use 'nft' tool.",
    );
    expect(() => resolveBackend("iptables", broken)).toThrow(
      /backend iptables: listing the iptables ruleset failed: iptables-save v1\.8\.9/,
    );
    // a broken iptables does not stand in the way of the nft backend
    expect(resolveBackend("nftables", broken)).toBe("nftables");
  });
});

describe("the observe probe under a real /bin/sh", () => {
  // Stub nft/iptables-save on PATH; the probe's sysctl part reads the real /proc of this machine.
  // The stub notes each call of its own in `calls`.
  function run(
    nft: string,
    expect: "present" | "absent" = "present",
  ): { out: string; calls: string[] } {
    const dir = mkdtempSync(join(tmpdir(), "natrule-probe-"));
    const log = join(dir, "calls");
    writeFileSync(join(dir, "nft"), `#!/bin/sh\necho "$*" >>"${log}"\n${nft}\n`);
    chmodSync(join(dir, "nft"), 0o755);
    const [cmd, ...args] = scriptArgv(observeCall("guest", expect));
    const out = execFileSync(cmd!, args, {
      env: { PATH: `${dir}:/usr/bin:/bin` },
      encoding: "utf8",
    });
    const calls = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
    rmSync(dir, { recursive: true, force: true });
    return { out, calls };
  }
  // as nft answers: its table's listing fails where the table is not there
  const nftWith = (tables: string[]): string =>
    [
      `if [ "$*" = "list tables ip" ]; then printf '%s\\n' ${tables.map((t) => `"table ip ${t}"`).join(" ")}; exit 0; fi`,
      `case " ${tables.join(" ")} " in *" $5 "*) echo "$@" ;; *) echo "Error: No such file or directory" >&2; exit 1 ;; esac`,
    ].join("\n");
  const LIST = "list tables ip";
  const TABLE = "-j list table ip pulumi_hv_guest";

  it("lists only its own table, and tells an absent table from a failing nft", () => {
    for (const expect_ of ["present", "absent"] as const) {
      const present = run(nftWith(["other", "pulumi_hv_guest"]), expect_).out;
      expect(parseProbe(present, "probe").get("nft")).toBe(`${TABLE}\n`);
      const absent = run(nftWith(["pulumi_hv_guest-nat"]), expect_).out;
      expect(parseProbe(absent, "probe").get("nft")).toBe("");
      const failing = run(
        'echo "netlink: Error: cache initialization failed: Operation not permitted" >&2; exit 1',
        expect_,
      ).out;
      const s = parseNatRuleState("guest", failing);
      expect(s.nftError).toBe(
        "netlink: Error: cache initialization failed: Operation not permitted",
      );
      expect(s.nft).toBeUndefined();
      expect(s.ipForward?.claimed).toBe(false);
    }
  });

  it("costs one nft where the table is where it was expected, two where it is not", () => {
    const there = nftWith(["other", "pulumi_hv_guest"]);
    const gone = nftWith(["other"]);
    expect(run(there, "present").calls).toEqual([TABLE]);
    expect(run(gone, "absent").calls).toEqual([LIST]);
    expect(run(there, "absent").calls).toEqual([LIST, TABLE]);
    expect(run(gone, "present").calls).toEqual([TABLE, LIST]);
    // the table is there but its listing fails: said so, not taken for an absent table
    const broken = `if [ "$*" = "${LIST}" ]; then echo "table ip pulumi_hv_guest"; else echo "Error: bad" >&2; exit 1; fi`;
    for (const expect_ of ["present", "absent"] as const) {
      expect(parseNatRuleState("guest", run(broken, expect_).out).nftError).toBe("Error: bad");
    }
  });

  it("asks for a create's first look the way a table that is not there costs least", () => {
    const args = (creating: boolean) =>
      natRuleModule.probe(
        NatRuleInputs.parse({
          name: "guest",
          sourceCidr: "198.18.140.0/24",
          outInterface: "wan0",
          masquerade: true,
        }),
        {
          sshClientAddress: undefined,
          host: "h",
          ...(creating ? { creating } : {}),
        },
      ).call.args[2];
    expect([args(true), args(false)]).toEqual(["absent", "present"]);
  });
});

describe("NatRuleInputs and check", () => {
  const reasons = (x: Record<string, unknown>) => {
    const r = NatRuleInputs.safeParse(x);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  const ok = {
    name: "guest",
    sourceCidr: "198.18.140.0/24",
    outInterface: "wan0",
    masquerade: true,
  };

  it("names each bad property", () => {
    expect(reasons({ ...ok, snatTo: "198.19.41.2" })).toEqual([
      "masquerade: masquerade and snatTo are mutually exclusive: masquerade uses the outgoing interface's address, snatTo a fixed one; set only one",
    ]);
    expect(reasons({ ...ok, sourceCidr: "198.18.140.0/33" })).toEqual([
      'sourceCidr: "198.18.140.0/33" is not an IPv4 CIDR (like 198.18.140.0/24)',
    ]);
    expect(reasons({ ...ok, sourceCidr: "2001:db8::/64" })).toEqual([
      'sourceCidr: "2001:db8::/64" is not an IPv4 CIDR (like 198.18.140.0/24)',
    ]);
    expect(
      reasons({
        ...ok,
        portForwards: [
          { protocol: "tcp", hostPort: 70000, destination: "198.18.140.10", destinationPort: 80 },
        ],
      }),
    ).toEqual(["portForwards.0.hostPort: must be at most 65535"]);
    expect(
      reasons({
        ...ok,
        portForwards: [
          { protocol: "sctp", hostPort: 1, destination: "198.18.140.300", destinationPort: 0 },
        ],
      }),
    ).toEqual([
      'portForwards.0.protocol: must be "tcp" or "udp"',
      'portForwards.0.destination: "198.18.140.300" is not an IPv4 address',
      "portForwards.0.destinationPort: must be at least 1",
    ]);
    const pf = {
      protocol: "tcp",
      hostPort: 8080,
      destination: "198.18.140.10",
      destinationPort: 80,
    };
    expect(reasons({ ...ok, portForwards: [pf, { ...pf, destination: "198.18.140.11" }] })).toEqual(
      ["portForwards.1.hostPort: tcp port 8080 is already forwarded by portForwards[0]"],
    );
    expect(reasons({ ...ok, name: "guest nat" })[0]).toMatch(/^name: must be 1 to 19 characters/);
    expect(reasons({ ...ok, name: "a234567890123456789x" })[0]).toMatch(
      /^name: must be 1 to 19 characters/,
    );
    expect(reasons({ ...ok, name: "9lives" })[0]).toMatch(/^name: .*starting with a letter/);
    expect(reasons({ ...ok, outInterface: "wan0;reboot" })[0]).toMatch(
      /^outInterface: must be 1 to 15/,
    );
    expect(reasons({ ...ok, backend: "pf" })).toEqual([
      'backend: must be "nftables", "iptables" or "auto"',
    ]);
  });

  it("clears host bits and fills defaults", () => {
    expect(NatRuleInputs.parse({ ...ok, sourceCidr: "198.18.140.77/24" })).toEqual({
      ...ok,
      sourceCidr: "198.18.140.0/24",
      snatTo: null,
      forward: false,
      portForwards: [],
      backend: "auto",
      persistence: "auto",
    });
  });

  it("fails check without connecting to the host", () => {
    const lc = new Lifecycle(natRuleModule, () => {
      throw new Error("check must not connect");
    });
    const conn = {
      host: "198.18.41.2",
      privateKey: "KEY",
      hostKey: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
    };
    expect(
      lc
        .check({}, { connection: conn, ...ok, snatTo: "198.19.41.2" })
        .failures.map((f) => f.property),
    ).toEqual(["masquerade"]);
    expect(lc.check({}, { connection: conn, ...ok }).failures).toEqual([]);
  });

  it("treats every input but the name as an in-place update", () => {
    expect(natRuleModule.identity).toEqual(["name"]);
    expect(natRuleModule.inputKeys).toEqual([
      "name",
      "sourceCidr",
      "outInterface",
      "masquerade",
      "snatTo",
      "forward",
      "portForwards",
      "backend",
      "persistence",
    ]);
  });
});
