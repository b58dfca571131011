import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingLinkOf } from "../support/plan-error";
import { PlanError } from "../../provider/src/errors";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";
import { bridgeModule } from "../../provider/src/resources/bridge";
import {
  parseBridgeState,
  parseLinks,
  parseRoutes,
  parseRecordedPorts,
} from "../../provider/src/resources/bridge/observe";
import { LINK_MARKER } from "../../provider/src/link-marker";
import { planBridge } from "../../provider/src/resources/bridge/plan";
import { BridgeInputs, type BridgeState } from "../../provider/src/resources/bridge/schema";
import { persistSections } from "../support/persist-probe";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");

/** The probe's output as the host would print it, from real captures; a host without systemd. */
function probeOutput(conf: string, recordedPorts: string, addrAssignType: string): string {
  return formatProbe([
    ...probeSections(conf, recordedPorts, addrAssignType),
    ...persistSections({
      systemd: false,
      unit: "pulumi-hypervisor-bridge-br0.service",
      files: {
        "/etc/systemd/system/pulumi-hypervisor-bridge-br0.service": undefined,
        "/etc/pulumi-hypervisor/bridge/br0.sh": undefined,
        "/etc/pulumi-hypervisor/bridge/br0.mac": undefined,
      },
    }),
  ]);
}

function probeSections(
  conf: string,
  recordedPorts: string,
  addrAssignType: string,
): Array<[string, string]> {
  return [
    // one `ip -batch`: addresses, routes, the route to the SSH client, a JSON line each
    [
      "links",
      [
        fixture("ip-d-j-addr-show.json"),
        fixture("ip-d-j-route-show-table-all.json"),
        fixture("ip-j-route-get.json"),
      ].join(""),
    ],
    ["bridge-conf", conf],
    ["ports", recordedPorts],
    ["addr-assign-type", addrAssignType],
  ];
}

// The capture as the provider would see a bridge of its own: marked with its ifalias.
function marked(s: BridgeState): BridgeState {
  if (!s.bridge) return s;
  const bridge = { ...s.bridge, ifalias: LINK_MARKER };
  return { ...s, bridge, links: { ...s.links, [s.name]: bridge } };
}

// br0 as captured: made by hand, so without the provider's marker.
const capturedAsIs = (
  name = "br0",
  conf = "",
  recordedPorts = "eno1\n",
  addrAssignType = "3\n",
): BridgeState =>
  parseBridgeState(
    name,
    probeOutput(conf, name === "br0" ? recordedPorts : "", name === "br0" ? addrAssignType : ""),
  );

// br0 is the provider's, its port eno1 was enslaved by the bridge itself, and its MAC pinned,
// unless said otherwise.
const captured = (...args: Parameters<typeof capturedAsIs>): BridgeState =>
  marked(capturedAsIs(...args));
const inputs = (x: Record<string, unknown>) => BridgeInputs.parse(x);

describe("parsing real ip -j output", () => {
  it("reads the bridge, its port, addresses, stp and the SSH route", () => {
    const s = captured();
    expect(s.bridge).toMatchObject({
      name: "br0",
      kind: "bridge",
      stp: true,
      vlanFiltering: false,
      up: true,
      mtu: 1500,
    });
    expect(s.bridge?.addresses).toEqual(["198.18.100.1/24", "2001:db8::1/64"]);
    expect(s.ports).toEqual(["eno1"]);
    expect(s.routes).toEqual([
      { family: 4, dst: "198.18.50.0/24", gateway: "198.18.7.1", dev: "eno2" },
    ]);
    expect(s.sshInterface).toBe("eno2");
    expect(s.sshLocalAddress).toBe("198.18.7.2");
    expect(s.helperAllowed).toBe(false);
    expect(s.recordedPorts).toEqual(["eno1"]);
  });

  it("keeps the main table's routes of both families from `route show table all` (the real capture)", () => {
    expect(parseRoutes(fixture("ip-d-j-route-show-table-all-more.json"))).toEqual([
      { family: 4, dst: "198.18.50.0/24", gateway: "198.18.7.1", dev: "eno2" },
      { family: 6, dst: "2001:db8:50::/48", gateway: "2001:db8::fe", dev: "br0", metric: 1024 },
      // a default route without a gateway is IPv6 by its preference, which IPv4 routes lack
      { family: 6, dst: "default", dev: "eno2", metric: 1024 },
    ]);
  });

  it("gives the routes of a listing by device that device, except a multipath route's", () => {
    // as `ip -d -j route show table all dev eno2` prints them: no `dev`; iproute2 6.1 leaves a
    // multipath route out of such a listing, and one that a later version put in has several
    const listed = JSON.stringify([
      { dst: "198.18.50.0/24", gateway: "198.18.7.1", flags: [] },
      { dst: "198.18.7.0/24", protocol: "kernel", scope: "link", flags: [] },
      { dst: "198.18.67.0/24", flags: [], nexthops: [{ gateway: "198.18.7.9", dev: "eno2" }] },
      { dst: "2001:db8:50::/48", gateway: "2001:db8::fe", metric: 1024, pref: "medium" },
    ]);
    expect(parseRoutes(listed, "eno2")).toEqual([
      { family: 4, dst: "198.18.50.0/24", gateway: "198.18.7.1", dev: "eno2" },
      { family: 6, dst: "2001:db8:50::/48", gateway: "2001:db8::fe", dev: "eno2", metric: 1024 },
    ]);
  });

  it("reads listings of links and of routes by device, as many as the section says", () => {
    const link = (ifname: string, master?: string) => ({
      ifindex: 1,
      ifname,
      flags: ["UP"],
      mtu: 1500,
      ...(master ? { master } : {}),
      address: "52:54:00:00:00:01",
    });
    const route = (dst: string) => [{ dst, gateway: "198.18.7.1", flags: [] }];
    const lines = (...xs: unknown[]) => xs.map((x) => JSON.stringify(x)).join("\n") + "\n";
    // the probe's other sections as captured, with this links section in place of its own
    const state = (arg: string, body: string) =>
      parseBridgeState(
        "br0",
        formatProbe(
          parseProbe(probeOutput("", "", ""), "the bridge probe").sections.map(
            (x): [string, string] =>
              x.name === "links"
                ? [`links ${arg}`, body]
                : [x.arg ? `${x.name} ${x.arg}` : x.name, x.body],
          ),
        ),
      );
    const body = lines(
      [link("eno1", "br0")],
      [link("br0")],
      [link("eno2")],
      route("198.18.50.0/24"),
      route("198.18.51.0/24"),
      route("198.18.52.0/24"),
      [{ dst: "198.18.7.1", dev: "eno2", prefsrc: "198.18.7.2" }],
    );
    const s = state("3 via br0 eno1 eno2", body);
    expect(Object.keys(s.links)).toEqual(["eno1", "br0", "eno2"]);
    expect(s.ports).toEqual(["eno1"]);
    expect(s.routes.map((r) => `${r.dst} ${r.dev}`)).toEqual([
      "198.18.50.0/24 br0",
      "198.18.51.0/24 eno1",
      "198.18.52.0/24 eno2",
    ]);
    expect(s.sshInterface).toBe("eno2");
    // no link and no route listed (nothing exists), and no route to the client
    expect(state("0 via", "")).toMatchObject({ links: {}, routes: [], bridge: undefined });
    // a listing missing: the probe stopped early
    expect(() => state("3 via br0 eno1 eno2", lines([link("eno1")]))).toThrow(
      /unexpected output of ip -d -j -batch .*: 1 of 6 listings/,
    );
    expect(() => state("x", body)).toThrow(/unexpected output of the bridge probe: links x/);
  });

  it("skips link-local and host-scope addresses", () => {
    const links = parseLinks(fixture("ip-d-j-addr-show.json"));
    expect(links["eno2"]?.addresses).toEqual(["198.18.7.2/24"]);
    expect(links["lo"]?.addresses).toEqual([]);
  });

  it("fails loudly on output it does not understand", () => {
    expect(() => parseLinks('[{"ifname": 3}]')).toThrow(/unexpected output of ip -d -j addr show/);
  });

  it("recognises only its own marked allow line in bridge.conf", () => {
    expect(captured("br0", "allow br0\n").helperAllowed).toBe(false);
    expect(
      captured("br0", "allow all\n# managed by pulumi-hypervisor: bridge br0\nallow br0\n")
        .helperAllowed,
    ).toBe(true);
  });
});

describe("planBridge", () => {
  it("creates an absent bridge with everything in order", () => {
    const s = captured("br9");
    expect(
      planBridge(
        inputs({
          name: "br9",
          addresses: ["198.18.9.1/24", "2001:DB8:0:0::9/64"],
          stp: true,
          mtu: 1400,
          macAddress: "52:54:00:00:00:09",
        }),
        s,
      ),
    ).toEqual([
      {
        summary: "create bridge br9",
        argv: [
          "ip",
          "link",
          "add",
          "name",
          "br9",
          "mtu",
          "1400",
          "address",
          "52:54:00:00:00:09",
          "type",
          "bridge",
          "stp_state",
          "1",
        ],
      },
      {
        summary: "mark br9 as created by pulumi-hypervisor (ifalias)",
        argv: ["ip", "link", "set", "dev", "br9", "alias", "pulumi-hypervisor"],
      },
      { summary: "bring br9 up", argv: ["ip", "link", "set", "dev", "br9", "up"] },
      {
        summary: "add address 198.18.9.1/24 to br9",
        argv: ["ip", "addr", "add", "198.18.9.1/24", "dev", "br9"],
      },
      {
        summary: "add address 2001:db8::9/64 to br9",
        argv: ["ip", "addr", "add", "2001:db8::9/64", "dev", "br9"],
      },
    ]);
  });

  it("pins a bridge's kernel-chosen MAC, so ports joining do not change it", () => {
    const unpinned = captured("br0", "", "eno1\n", "1\n");
    expect(unpinned.macPinned).toBe(false);
    expect(
      planBridge(
        inputs({
          name: "br0",
          addresses: ["198.18.100.1/24", "2001:db8::1/64"],
          stp: true,
          ports: ["eno1"],
        }),
        unpinned,
      ),
    ).toEqual([
      {
        summary: "pin br0's mac address, so ports joining or leaving do not change it",
        script: { name: "resources/bridge/bridge-pin-mac.sh", args: ["br0"] },
      },
    ]);
  });

  it("is empty when the host already matches", () => {
    expect(
      planBridge(
        inputs({
          name: "br0",
          addresses: ["2001:db8::1/64", "198.18.100.1/24"],
          stp: true,
          ports: ["eno1"],
        }),
        captured(),
      ),
    ).toEqual([]);
  });

  it("repairs drift live, without recreating the bridge", () => {
    const steps = planBridge(
      inputs({
        name: "br0",
        addresses: ["198.18.100.1/24", "198.18.101.1/24"],
        stp: false,
        mtu: 1400,
        ports: [],
      }),
      captured(),
    );
    expect(steps.map((s) => s.summary)).toEqual([
      "set stp off on br0",
      "set mtu 1400 on br0",
      "detach eno1 from br0",
      "remove address 2001:db8::1/64 from br0",
      "add address 198.18.101.1/24 to br0",
      "forget br0's recorded ports",
    ]);
    expect(
      steps.some((s) => "argv" in s && s.argv.includes("del") && s.argv.includes("link")),
    ).toBe(false);
  });

  it("never detaches a port it did not enslave (a tap of TapDevice or qemu-bridge-helper)", () => {
    const foreign = captured("br0", "", "");
    expect(
      planBridge(
        inputs({ name: "br0", addresses: ["198.18.100.1/24", "2001:db8::1/64"], stp: true }),
        foreign,
      ),
    ).toEqual([]);
  });

  it("records the ports it enslaves, so later plans know which are its own", () => {
    const steps = planBridge(
      inputs({
        name: "br0",
        addresses: ["198.18.100.1/24", "2001:db8::1/64"],
        stp: true,
        ports: ["eno1"],
      }),
      captured("br0", "", ""),
    );
    expect(steps).toEqual([
      {
        summary: "record br0's ports (eno1)",
        writeFile: {
          path: "/run/pulumi-hypervisor/bridge/br0.ports",
          content: "eno1\n",
          mode: 0o644,
        },
      },
    ]);
  });

  it("deletes only the bridge, and its own helper line", () => {
    const conf = "# managed by pulumi-hypervisor: bridge br0\nallow br0\n";
    expect(planBridge(undefined, captured("br0", conf)).map((s) => s.summary)).toEqual([
      "stop allowing br0 for qemu-bridge-helper in /etc/qemu/bridge.conf",
      "delete bridge br0",
      "forget br0's recorded ports",
    ]);
    expect(planBridge(undefined, captured("br7"))).toEqual([]);
  });

  it("brings a port it brought up down again when it lets go of it (delete or detach)", () => {
    expect(parseRecordedPorts("eno1 raised\nveth0\n")).toEqual({
      recordedPorts: ["eno1", "veth0"],
      raisedPorts: ["eno1"],
    });
    // eno1 was down: the bridge attaches it, brings it up and records that it did
    const s = captured("br0", "", "");
    const down = { ...s.links["eno1"]!, master: undefined, up: false };
    const before: BridgeState = { ...s, ports: [], links: { ...s.links, eno1: down } };
    const want = inputs({
      name: "br0",
      addresses: ["198.18.100.1/24", "2001:db8::1/64"],
      stp: true,
      ports: ["eno1"],
    });
    expect(planBridge(want, before)).toEqual([
      {
        summary: "attach eno1 to br0",
        argv: ["ip", "link", "set", "dev", "eno1", "master", "br0"],
      },
      { summary: "bring eno1 up", argv: ["ip", "link", "set", "dev", "eno1", "up"] },
      {
        summary: "record br0's ports (eno1 raised)",
        writeFile: {
          path: "/run/pulumi-hypervisor/bridge/br0.ports",
          content: "eno1 raised\n",
          mode: 0o644,
        },
      },
    ]);
    const down1 = {
      summary: "bring eno1 down again (it was down before br0 brought it up)",
      argv: ["ip", "link", "set", "dev", "eno1", "down"],
    };
    const after = captured("br0", "", "eno1 raised\n");
    expect(planBridge(want, after)).toEqual([]);
    expect(planBridge(undefined, after).map((x) => x.summary)).toEqual([
      "delete bridge br0",
      down1.summary,
      "forget br0's recorded ports",
    ]);
    expect(planBridge({ ...want, ports: [] }, after)).toEqual([
      { summary: "detach eno1 from br0", argv: ["ip", "link", "set", "dev", "eno1", "nomaster"] },
      down1,
      { summary: "forget br0's recorded ports", argv: expect.any(Array) as unknown },
    ]);
    // a port it found up stays up
    expect(planBridge(undefined, captured()).map((x) => x.summary)).not.toContain(down1.summary);
  });

  it("refuses to enslave the NIC carrying the SSH session unless its addresses move too", () => {
    expect(() =>
      planBridge(
        inputs({
          name: "br0",
          addresses: ["198.18.100.1/24", "2001:db8::1/64"],
          stp: true,
          ports: ["eno1", "eno2"],
        }),
        captured(),
      ),
    ).toThrow(
      /port "eno2" carries this SSH session; enslaving it would cut the provider off\. Add its addresses \(198\.18\.7\.2\/24\)/,
    );
  });

  it("moves the SSH NIC's addresses and routes onto the bridge in one step, under the dead-man timer", () => {
    const steps = planBridge(
      inputs({
        name: "br0",
        addresses: ["198.18.100.1/24", "2001:db8::1/64", "198.18.7.2/24"],
        stp: true,
        ports: ["eno1", "eno2"],
      }),
      captured(),
    );
    expect(steps.map((s) => s.summary)).toEqual([
      "arm a dead-man timer: unless a new SSH login confirms the change within 90s, the host restores its previous network configuration by itself (eno2 carries this SSH session)",
      "attach eno2 to br0, moving its addresses and routes onto br0 in one step (carries this SSH session)",
      "log in again over a new SSH connection and stop the dead-man timer of bridge-br0-eno2",
      "record br0's ports (eno1, eno2)",
    ]);
    const step = steps[1]!;
    expect(step.summary).toBe(
      "attach eno2 to br0, moving its addresses and routes onto br0 in one step (carries this SSH session)",
    );
    // every command runs even if one fails (run-all.sh), each given as its word count and words
    expect("script" in step && step.script).toEqual({
      name: "resources/bridge/run-all.sh",
      args: [
        ...["7", "ip", "link", "set", "dev", "eno2", "master", "br0"],
        ...["6", "ip", "link", "set", "dev", "eno2", "up"],
        ...["6", "ip", "addr", "del", "198.18.7.2/24", "dev", "eno2"],
        ...["6", "ip", "addr", "add", "198.18.7.2/24", "dev", "br0"],
        ...["8", "ip", "route", "replace", "198.18.50.0/24", "via", "198.18.7.1", "dev", "br0"],
      ],
    });
  });

  it("swapping the ports of the session's bridge runs under the timer, whose restore also undoes the new port", () => {
    // br0 carries the session with its port eno1; the change swaps eno1 for eno2.
    const state: BridgeState = { ...captured(), sshInterface: "br0" };
    const steps = planBridge(inputs({ name: "br0", ports: ["eno2"] }), state);
    const arm = steps.find((s) => s.summary.startsWith("arm a dead-man timer"));
    const restore = arm && !("writeFile" in arm) ? (arm.stdin ?? "") : "";
    const attachBack = restore.indexOf("ip link set dev eno1 master br0");
    const detachNew = restore.indexOf("ip link set dev eno2 nomaster");
    expect(attachBack).toBeGreaterThan(0);
    expect(detachNew).toBeGreaterThan(attachBack);
  });

  it("refuses a port that does not exist or belongs to another bridge", () => {
    expect(() => planBridge(inputs({ name: "br9", ports: ["nope0"] }), captured("br9"))).toThrow(
      /port "nope0" does not exist on the host/,
    );
    expect(
      missingLinkOf(() => planBridge(inputs({ name: "br9", ports: ["nope0"] }), captured("br9"))),
    ).toBe("nope0");
    expect(() => planBridge(inputs({ name: "br9", ports: ["eno1"] }), captured("br9"))).toThrow(
      /port "eno1" is already attached to br0/,
    );
  });

  it("refuses to manage an interface that is not a bridge", () => {
    expect(() => planBridge(inputs({ name: "eno2" }), captured("eno2"))).toThrow(
      /interface "eno2" exists and is not a bridge/,
    );
    expect(planBridge(undefined, captured("eno2"))).toEqual([]);
  });

  it("adds and removes its own helper line", () => {
    const add = planBridge(
      inputs({
        name: "br0",
        addresses: ["198.18.100.1/24", "2001:db8::1/64"],
        stp: true,
        ports: ["eno1"],
        allowQemuBridgeHelper: true,
      }),
      captured(),
    );
    expect(add.map((s) => s.summary)).toEqual([
      "allow br0 for qemu-bridge-helper in /etc/qemu/bridge.conf",
    ]);
    expect("script" in add[0]! && add[0].script).toEqual({
      name: "resources/bridge/qemu-bridge-helper.sh",
      args: ["add", "br0"],
    });
  });
});

describe("BridgeInputs", () => {
  const reasons = (x: Record<string, unknown>) => {
    const r = BridgeInputs.safeParse(x);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  it("rejects bad names, CIDRs, MACs and MTUs with the property named", () => {
    expect(reasons({ name: "a234567890123456" })[0]).toMatch(/^name: must be 1 to 15 characters/);
    expect(reasons({ name: "br0;reboot" })[0]).toMatch(/^name: must be 1 to 15/);
    expect(reasons({ name: "br 0" })[0]).toMatch(/^name: /);
    expect(reasons({ name: "br0", addresses: ["198.18.0.1/24", "10.0.0.300/24"] })).toEqual([
      'addresses.1: "10.0.0.300/24" is not a CIDR',
    ]);
    expect(reasons({ name: "br0", macAddress: "52:54:00:12:34" })).toEqual([
      "macAddress: must be six hex octets separated by ':'",
    ]);
    expect(reasons({ name: "br0", mtu: -1 })).toEqual(["mtu: must be at least 68"]);
    expect(reasons({ name: "br0", ports: ["br0"] })).toEqual([
      "ports.0: a bridge cannot be its own port",
    ]);
    expect(reasons({ name: "br0", bogus: 1 })[0]).toMatch(/bogus/);
  });
  it("canonicalises addresses and MACs", () => {
    expect(
      BridgeInputs.parse({
        name: "b",
        addresses: ["2001:DB8:0:0:0:0:0:1/64"],
        macAddress: "52:54:00:AB:CD:EF",
      }),
    ).toMatchObject({
      addresses: ["2001:db8::1/64"],
      macAddress: "52:54:00:ab:cd:ef",
    });
  });
});

describe("a bridge the provider did not create", () => {
  const want = {
    name: "br0",
    addresses: ["198.18.100.1/24", "2001:db8::1/64"],
    stp: true,
    ports: ["eno1"],
  };
  const mark = {
    summary: "mark br0 as created by pulumi-hypervisor (ifalias)",
    argv: ["ip", "link", "set", "dev", "br0", "alias", "pulumi-hypervisor"],
  };

  it("reads the marker from ip -j's ifalias", () => {
    expect(capturedAsIs().bridge?.ifalias).toBeUndefined();
    const text = JSON.stringify([
      { ifindex: 4, ifname: "br0", flags: [], mtu: 1500, ifalias: "pulumi-hypervisor" },
    ]);
    expect(parseLinks(text)["br0"]?.ifalias).toBe("pulumi-hypervisor");
  });

  it("is refused at create, naming import and adopt, before any step", () => {
    const admin = { ...capturedAsIs(), creating: true };
    const plan = (): unknown => planBridge(inputs(want), admin);
    expect(plan).toThrow(PlanError);
    expect(plan).toThrow(
      'bridge "br0" already exists and was not created by pulumi-hypervisor (it has no ifalias, not "pulumi-hypervisor"); ' +
        "refusing to take it over, nothing was changed. To manage it, import it " +
        "(pulumi import hypervisor:index:Bridge <resource name> br0) or set adopt: true " +
        "(the provider then changes it to match, and destroy deletes it)",
    );
    const aliased = marked(admin);
    if (aliased.bridge) aliased.bridge.ifalias = "uplink to rack 3";
    expect(() => planBridge(inputs(want), aliased)).toThrow(
      /its ifalias is "uplink to rack 3", not "pulumi-hypervisor"/,
    );
  });

  it("is taken over at create with adopt: true, marked first", () => {
    const admin = { ...capturedAsIs(), creating: true };
    expect(planBridge(inputs({ ...want, adopt: true }), admin)).toEqual([mark]);
    expect(planBridge(inputs({ ...want, adopt: true, mtu: 9000 }), admin)).toEqual([
      mark,
      { summary: "set mtu 9000 on br0", argv: ["ip", "link", "set", "dev", "br0", "mtu", "9000"] },
    ]);
  });

  it("is converged and marked by an update (imported, or made by an older version)", () => {
    expect(planBridge(inputs(want), capturedAsIs())).toEqual([mark]);
  });

  it("of the provider's own, marked, is created over without refusal", () => {
    expect(planBridge(inputs(want), { ...captured(), creating: true })).toEqual([]);
  });

  it("is deleted by a destroy once in the stack, marked or not", () => {
    const summaries = (s: BridgeState): string[] => planBridge(undefined, s).map((x) => x.summary);
    expect(summaries(capturedAsIs())).toEqual(summaries(captured()));
    expect(summaries(capturedAsIs())).toContain("delete bridge br0");
  });

  it("never shows adopt as drift: it is the program's opt-in, not the bridge's", () => {
    const d = inputs({ ...want, adopt: true });
    expect(bridgeModule.observedInputs(capturedAsIs(), d)["adopt"]).toBe(true);
    expect(bridgeModule.observedInputs(capturedAsIs(), inputs(want))["adopt"]).toBe(false);
  });
});
