// The probes list links and routes in one `ip -d -j -batch` process. Routes under -d carry the
// defaults plain output leaves out; withoutDetailDefaults must turn them back into exactly what
// `ip -j route show` prints, on real iproute2 and a route table with every kind the providers read.
// The tap probe asks for the links it names, those that exist, or for every link without sysfs.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ipBatchOutputs, withoutDetailDefaults } from "../../provider/src/host-output";
import { scriptArgv } from "../../provider/src/host/script";
import { observeCall, parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";

const ns = `pht-ipb-${process.pid}`;
const ip = (args: string[], input?: string): string =>
  execFileSync("ip", ["-n", ns, ...args], { encoding: "utf8", ...(input ? { input } : {}) });

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
  const tns = `pht-ipt-${process.pid}`;
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", tns]);
    for (const line of [
      "link add d0 type bridge",
      "tuntap add dev t0 mode tap",
      "link set dev t0 master d0",
    ]) {
      execFileSync("ip", ["-n", tns, ...line.split(" ")]);
    }
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", tns]);
  });

  // the probe as the provider sends it, run in the namespace (ip netns exec mounts its sysfs);
  // `hideSysfs` runs it where /sys is an empty tmpfs
  const probe = (inputs: Record<string, unknown>, hideSysfs = false): string[] => {
    const argv = scriptArgv(observeCall(TapDeviceInputs.parse(inputs), true));
    const wrap = hideSysfs
      ? ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys && exec "$@"', "hide"]
      : [];
    const out = execFileSync("ip", ["netns", "exec", tns, ...wrap, ...argv], { encoding: "utf8" });
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
