// The probes list links and routes in one `ip -d -j -batch` process. Routes under -d carry the
// defaults plain output leaves out; withoutDetailDefaults must turn them back into exactly what
// `ip -j route show` prints, on real iproute2 and a route table with every kind the providers read.
// The tap probe asks for the links it names, those that exist, or for every link without sysfs.
// The bridge probe asks for its links and the routes via them by name, and must read the same
// routes as a listing of every route would give it.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ipBatchOutputs, withoutDetailDefaults } from "../../provider/src/host-output";
import { scriptArgv } from "../../provider/src/host/script";
import {
  observeCall as bridgeObserveCall,
  parseBridgeState,
  parseRoutes,
} from "../../provider/src/resources/bridge/observe";
import {
  observeCall,
  parseHostRoutes,
  parseTapDeviceState,
} from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";

const ns = `pht-ipb-${process.pid}`;
const ip = (args: string[], input?: string): string =>
  execFileSync("ip", ["-n", ns, ...args], { encoding: "utf8", ...(input ? { input } : {}) });

/** Returns the name of a network namespace made of these `ip` lines for the describe block. */
function scratchNamespace(name: string, setup: readonly string[]): string {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", name]);
    for (const line of setup) execFileSync("ip", ["-n", name, ...line.split(" ")]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", name]);
  });
  return name;
}

/** Returns a runner of `ip -n NAME ARGS...`. */
const ipIn =
  (name: string) =>
  (args: string[]): string =>
    execFileSync("ip", ["-n", name, ...args], { encoding: "utf8" });

/** Returns the items in one order whatever order they came in. */
const sorted = <T>(xs: T[]): T[] =>
  [...xs].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

/**
 * Returns the output of a probe as the provider sends it, run in the namespace (ip netns exec
 * mounts its sysfs); `hideSysfs` runs it where /sys is an empty tmpfs.
 */
function runIn(name: string, argv: readonly string[], hideSysfs = false): string {
  const wrap = hideSysfs
    ? ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys && exec "$@"', "hide"]
    : [];
  return execFileSync("ip", ["netns", "exec", name, ...wrap, ...argv], { encoding: "utf8" });
}

beforeAll(() => {
  execFileSync("ip", ["netns", "add", ns]);
  const setup = [
    "link set lo up",
    "link add d0 type bridge",
    "link set d0 up",
    "addr add 198.18.50.1/24 dev d0",
    "addr add 2001:db8:50::1/64 dev d0 nodad",
    "route add 198.18.51.0/24 via 198.18.50.2 metric 50 proto static",
    "route add 198.18.52.7 dev d0 scope link",
    "route add blackhole 198.18.53.0/24",
    "route add unreachable 198.18.54.0/24",
    "route add 198.18.55.0/24 via 198.18.99.9 dev d0 onlink",
    "route add 198.18.56.0/24 dev d0 proto 99 src 198.18.50.1",
    "route add local 198.18.58.1 dev d0 table main",
    "route add default via 198.18.50.254",
    "-6 route add 2001:db8:51::/64 via 2001:db8:50::2 proto static",
    "-6 route add 2001:db8:52::7/128 dev d0",
  ];
  for (const line of setup) ip(line.split(" "));
});

afterAll(() => {
  execFileSync("ip", ["netns", "del", ns]);
});

describe("routes from ip -d, without its defaults", () => {
  for (const family of [[], ["-6"]]) {
    it(`are what ip ${family.join(" ")} -j route show prints`, () => {
      const plain = JSON.parse(ip([...family, "-j", "route", "show", "table", "main"])) as object[];
      const detailed = JSON.parse(ip([...family, "-d", "-j", "route", "show", "table", "main"]));
      expect(plain.length).toBeGreaterThanOrEqual(family.length ? 3 : 9);
      expect((detailed as object[]).map((r) => withoutDetailDefaults(r))).toEqual(plain);
    });
  }

  it("of the main table within table all are those of both families' main listings", () => {
    const all = JSON.parse(ip(["-d", "-j", "route", "show", "table", "all"])) as {
      table?: string;
    }[];
    const main = all
      .filter((r) => r.table === "main")
      .map(({ table: _table, ...r }) => withoutDetailDefaults(r));
    const plain = [
      ...(JSON.parse(ip(["-j", "route", "show", "table", "main"])) as object[]),
      ...(JSON.parse(ip(["-6", "-j", "route", "show", "table", "main"])) as object[]),
    ];
    expect(main).toEqual(plain);
    // the other tables are there too, for the parser to drop
    expect(all.some((r) => r.table === "local")).toBe(true);
  });

  it("come out of one batch with the links, a JSON line per command", () => {
    const out = ip(["-d", "-j", "-batch", "-"], "link show\nroute show table main\n");
    const [links = "", routes = ""] = ipBatchOutputs(out, 2, 2, "ip -batch");
    expect((JSON.parse(links) as { ifname: string }[]).map((l) => l.ifname)).toEqual(["lo", "d0"]);
    const plain = JSON.parse(ip(["-j", "route", "show", "table", "main"]));
    expect((JSON.parse(routes) as object[]).map((r) => withoutDetailDefaults(r))).toEqual(plain);
  });
});

describe("the tap probe's links", () => {
  // a namespace of its own: a bridge d0 and a tap t0 on it
  const tns = scratchNamespace(`pht-ipt-${process.pid}`, [
    "link add d0 type bridge",
    "tuntap add dev t0 mode tap",
    "link set dev t0 master d0",
  ]);

  const probe = (inputs: Record<string, unknown>, hideSysfs = false): string[] => {
    const argv = scriptArgv(observeCall(TapDeviceInputs.parse(inputs), true));
    const out = runIn(tns, argv, hideSysfs);
    return Object.keys(parseTapDeviceState(String(inputs["name"]), out).links).sort();
  };

  it("are the tap and its bridge, those that exist, and no other link", () => {
    expect(probe({ name: "t0", bridge: "d0" })).toEqual(["d0", "t0"]);
    expect(probe({ name: "t9", bridge: "d0" })).toEqual(["d0"]);
    expect(probe({ name: "t9", bridge: "d9" })).toEqual([]);
    // a file of /sys/class/net that is no link is not asked for
    expect(probe({ name: "bonding_masters", bridge: "d0" })).toEqual(["d0"]);
  });

  it("are every link where there is no sysfs to look in", () => {
    expect(probe({ name: "t9", bridge: "d0" }, true)).toEqual(["d0", "lo", "t0"]);
  });
});

describe("a routed tap's routes", () => {
  // a namespace of its own: the tap r0 (up, so its routes stay), a bridge d0 (up, with an address)
  // holding host routes of other addresses, and routes of every kind around them
  const rns = scratchNamespace(`pht-iprt-${process.pid}`, [
    "tuntap add dev r0 mode tap",
    "link add d0 type bridge",
    ...["lo", "r0", "d0"].map((l) => `link set ${l} up`),
    "addr add 198.18.70.1/24 dev d0",
    "addr add 2001:db8:70::1/64 dev d0 nodad",
    "route add 198.18.71.5 dev r0 proto static",
    "route add 198.18.71.6 dev r0",
    "route add 198.18.71.9 dev d0",
    "route add blackhole 198.18.71.10",
    "route add 198.18.71.0/24 dev d0",
    "route add 198.18.71.12 dev d0 table 100",
    "route add 198.18.71.13 nexthop via 198.18.70.2 dev d0 nexthop via 198.18.70.3 dev d0",
    "-6 route add 2001:db8:71::5 dev r0 proto static",
    "-6 route add 2001:db8:71::9 dev d0",
  ]);
  const bip = ipIn(rns);
  const ADDRESSES = ["198.18.71.5", "198.18.71.9", "198.18.71.10", "198.18.71.11"];
  const routed = (name: string, addresses: string[], hideSysfs = false) => {
    const inputs = TapDeviceInputs.parse({ name, routed: { addresses } });
    return parseTapDeviceState(name, runIn(rns, scriptArgv(observeCall(inputs)), hideSysfs))
      .hostRoutes;
  };
  /** The host routes a listing of every route gives: those via the tap and those of the addresses. */
  const fromFullListing = (name: string, addresses: string[]) =>
    parseHostRoutes(bip(["-d", "-j", "route", "show", "table", "all"])).filter(
      (r) => r.dev === name || addresses.includes(r.address),
    );

  it("are its own and those of its addresses via any device, as a listing of every route gives", () => {
    const addresses = [...ADDRESSES, "2001:db8:71::9", "2001:db8:71::5"];
    const read = routed("r0", addresses);
    expect(sorted(read)).toEqual(sorted(fromFullListing("r0", addresses)));
    // what the clash check and the routes it added need: each kind is there
    expect(read.map((r) => `${r.address} ${r.dev ?? r.type}`).sort()).toEqual(
      [
        "198.18.71.10 blackhole",
        "198.18.71.5 r0",
        "198.18.71.6 r0",
        "198.18.71.9 d0",
        "2001:db8:71::5 r0",
        "2001:db8:71::9 d0",
      ].sort(),
    );
    // another table's host route, a /24 around an address and a multipath route are no clash
    expect(
      read.some((r) => ["198.18.71.12", "198.18.71.13", "198.18.71.0"].includes(r.address)),
    ).toBe(false);
  });

  it("are read before the tap exists, and every route is read without sysfs", () => {
    expect(sorted(routed("r9", ADDRESSES))).toEqual(sorted(fromFullListing("r9", ADDRESSES)));
    expect(
      routed("r9", ADDRESSES)
        .map((r) => `${r.address} ${r.dev ?? r.type}`)
        .sort(),
    ).toEqual(["198.18.71.10 blackhole", "198.18.71.5 r0", "198.18.71.9 d0"]);
    // without sysfs the listing is every route's, which the plan reads the same way
    expect(sorted(routed("r0", ADDRESSES, true))).toEqual(
      sorted(parseHostRoutes(bip(["-d", "-j", "route", "show", "table", "all"]))),
    );
  });
});

describe("the bridge probe's links and routes", () => {
  // a namespace of its own: the bridge b0 with the port p0, the uplink e0 (a veth) asked for as a
  // port, another bridge b1 with its port p1 and routes of their own, and a multipath route
  const bns = scratchNamespace(`pht-ipbr-${process.pid}`, [
    "link set lo up",
    "link add b0 type bridge",
    "link add b1 type bridge",
    "link add e0 type veth peer name e0p",
    "link add p0 type veth peer name p0p",
    "link add p1 type veth peer name p1p",
    "link set p0 master b0",
    "link set p1 master b1",
    ...["b0", "b1", "e0", "e0p", "p0", "p0p", "p1", "p1p"].map((l) => `link set ${l} up`),
    "addr add 198.18.60.1/24 dev b0",
    "addr add 2001:db8:60::1/64 dev b0 nodad",
    "addr add 198.18.61.2/24 dev e0",
    "addr add 2001:db8:61::2/64 dev e0 nodad",
    "addr add 198.18.62.1/24 dev b1",
    "route add default via 198.18.61.1 proto static metric 100",
    "route add 198.18.63.0/24 via 198.18.60.9 dev b0",
    "route add 198.18.64.0/24 via 198.18.99.9 dev e0 onlink",
    "route add 198.18.65.0/24 dev e0 scope link proto 99 src 198.18.61.2",
    "route add 198.18.66.0/24 via 198.18.62.9",
    "route add 198.18.67.0/24 nexthop via 198.18.60.9 dev b0 nexthop via 198.18.61.9 dev e0",
    "route add 198.18.68.0/24 dev e0 table 100",
    "-6 route add 2001:db8:69::/64 via 2001:db8:61::1 dev e0 proto static",
    "-6 route add 2001:db8:70::/64 via 2001:db8:60::9 dev b0",
  ]);

  const bip = ipIn(bns);
  const probe = (name: string, ports: string[], hideSysfs = false) =>
    parseBridgeState(
      name,
      runIn(bns, scriptArgv(bridgeObserveCall(name, "198.18.61.1", ports)), hideSysfs),
    );
  /** The routes a listing of every route gives for these devices, as the probe read them before. */
  const fromFullListing = (devs: string[]) =>
    parseRoutes(bip(["-d", "-j", "route", "show", "table", "all"])).filter((r) =>
      devs.includes(r.dev),
    );

  it("are the bridge, its ports and the ports asked for, and no other link", () => {
    const s = probe("b0", ["e0", "p0", "nope"]);
    expect(Object.keys(s.links).sort()).toEqual(["b0", "e0", "p0"]);
    expect(s.ports).toEqual(["p0"]);
    expect(s.bridge?.addresses).toEqual(["198.18.60.1/24", "2001:db8:60::1/64"]);
    expect(s.links["e0"]?.addresses).toEqual(["198.18.61.2/24", "2001:db8:61::2/64"]);
    expect(s.sshInterface).toBe("e0");
    // no bridge yet: the ports asked for that exist
    expect(Object.keys(probe("b9", ["e0", "p1"]).links).sort()).toEqual(["e0", "p1"]);
  });

  it("are the routes via them that a listing of every route gives, both families", () => {
    const s = probe("b0", ["e0", "p0"]);
    const full = fromFullListing(["b0", "e0", "p0"]);
    // the listing has each kind the probe must carry over: gateways, onlink, src, proto, v6
    expect(full.length).toBe(6);
    expect(sorted(s.routes)).toEqual(sorted(full));
    // a multipath route has no device in either, and another bridge's routes are not read
    expect(s.routes.some((r) => r.dst === "198.18.67.0/24" || r.dst === "198.18.66.0/24")).toBe(
      false,
    );
    expect(sorted(probe("b1", []).routes)).toEqual(sorted(fromFullListing(["b1"])));
  });

  it("are every link and every route where there is no sysfs to look in", () => {
    const s = probe("b0", ["e0"], true);
    expect(Object.keys(s.links).sort()).toEqual(
      ["b0", "b1", "e0", "e0p", "lo", "p0", "p0p", "p1", "p1p"].sort(),
    );
    expect(sorted(s.routes)).toEqual(
      sorted(parseRoutes(bip(["-d", "-j", "route", "show", "table", "all"]))),
    );
  });
});
