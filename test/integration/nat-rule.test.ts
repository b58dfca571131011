// NatRule on real lab hosts with a WAN, through the dynamic-provider plugin driven as the engine
// drives it. A client namespace on a bridge inside each lab host plays the guest.
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, type ExecResult, type Lab, type LabHost, type LabWan } from "../../lab";
import { connectionSeenByServer } from "../support/connection-probe";
import type { DynamicProviderPlugin, Engine } from "../../lab/engine/engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";

// Guest networks inside the lab hosts (first three octets of a /24).
const NET_0 = labGuestNet(0);
const NET_1 = labGuestNet(1);
const NET_2 = labGuestNet(2);

let lab: Lab;
let wan: LabWan;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let h1: LabHost; // nftables
let h2: LabHost; // iptables

const CLIENT_NS = "natc";
const subnetOf = (h: LabHost): string => (h === h1 ? NET_0 : NET_1);
const clientAddress = (h: LabHost): string => `${subnetOf(h)}.10`;
const uplinkAddress = (h: LabHost): string => h.wanAddress ?? "";

// A bridge with the gateway address and a client namespace behind it with a static address.
const CLIENT_SETUP = [
  "set -e",
  "gw=$1 client=$2 ns=$3",
  "ip link add brnat type bridge",
  'ip addr add "$gw/24" dev brnat',
  "ip link set brnat up",
  'ip netns add "$ns"',
  'ip link add vnatc type veth peer name eth0 netns "$ns"',
  "ip link set vnatc master brnat",
  "ip link set vnatc up",
  'ip -n "$ns" link set lo up',
  'ip -n "$ns" addr add "$client/24" dev eth0',
  'ip -n "$ns" link set eth0 up',
  'ip -n "$ns" route add default via "$gw"',
  "echo 0 > /proc/sys/net/ipv4/ip_forward",
].join("\n");

async function ok(p: Promise<ExecResult>): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const inClient = (h: LabHost, argv: string[], timeoutMs = 20_000): Promise<ExecResult> =>
  h.exec(["ip", "netns", "exec", CLIENT_NS, ...argv], { timeoutMs });

/** The source address the WAN sees when the client behind host h connects to it. */
const sourceSeenByWan = async (h: LabHost, port: number): Promise<string> =>
  (
    await connectionSeenByServer(
      (a) => wan.exec(a, { timeoutMs: 25_000 }),
      (a) => inClient(h, a),
      { address: wan.address, port },
    )
  ).peer;

const ipForward = async (h: LabHost): Promise<string> =>
  (await ok(h.exec(["cat", "/proc/sys/net/ipv4/ip_forward"]))).trim();
const nftTables = async (h: LabHost): Promise<string[]> =>
  (await ok(h.exec(["nft", "list", "tables"]))).trim().split("\n");
const adminTable = (h: LabHost): Promise<string> =>
  ok(h.exec(["nft", "list", "table", "inet", "admin_filter"]));

const natSpec = (h: LabHost, resName: string, inputs: Record<string, unknown>) =>
  spec("NatRule", resName, { connection: h.connection(), outInterface: "wan0", ...inputs });

// A rule on h1 with one tcp forward of hostPort to the client's port 80.
const forwardSpec = (
  resName: string,
  name: string,
  hostPort: number,
  inputs: Record<string, unknown> = {},
) =>
  natSpec(h1, resName, {
    name,
    sourceCidr: `${NET_0}.0/24`,
    portForwards: [{ protocol: "tcp", hostPort, destination: `${NET_0}.10`, destinationPort: 80 }],
    ...inputs,
  });

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "itnat", hosts: 2, wan: true }));
  [h1, h2] = lab.hosts as [LabHost, LabHost];
  wan = lab.wan!;
  for (const h of [h1, h2]) {
    await ok(
      h.exec(["sh", "-c", CLIENT_SETUP, "sh", `${subnetOf(h)}.1`, clientAddress(h), CLIENT_NS]),
    );
  }
  // The admin's own nftables table, which the provider must never touch.
  await ok(
    h1.exec(["nft", "-f", "-"], {
      stdin:
        "table inet admin_filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 9999 accept\n\t}\n}\n",
    }),
  );
});

afterAll(() => stopLabWithEngine({ lab, plugin }));

describe("NatRule with nftables", () => {
  const guestnat = (extra: Record<string, unknown> = {}) =>
    natSpec(h1, "nat", {
      name: "guestnat",
      sourceCidr: `${NET_0}.1/24`,
      masquerade: true,
      forward: true,
      ...extra,
    });
  const portForward = {
    protocol: "tcp",
    hostPort: 8080,
    destination: `${NET_0}.10`,
    destinationPort: 80,
    inInterface: "wan0",
  };
  let admin = "";

  it("rejects bad inputs at check, naming the property, without connecting", async () => {
    const before = await h1.sshConnectionCount();
    const { failures } = await engine.preview([
      await guestnat({ snatTo: uplinkAddress(h1) }),
      await natSpec(h1, "badcidr", {
        name: "badcidr",
        sourceCidr: `${NET_0}.0/33`,
        masquerade: true,
      }),
      await natSpec(h1, "badport", {
        name: "badport",
        sourceCidr: `${NET_0}.0/24`,
        portForwards: [{ ...portForward, hostPort: 70000 }],
      }),
    ]);
    expect(failures).toEqual({
      nat: [
        {
          property: "masquerade",
          reason:
            "masquerade: masquerade and snatTo are mutually exclusive: masquerade uses the outgoing interface's address, snatTo a fixed one; set only one",
        },
      ],
      badcidr: [
        {
          property: "sourceCidr",
          reason: `sourceCidr: "${NET_0}.0/33" is not an IPv4 CIDR (like 198.18.140.0/24)`,
        },
      ],
      badport: [
        {
          property: "portForwards[0].hostPort",
          reason: "portForwards[0].hostPort: must be at most 65535",
        },
      ],
    });
    expect(await h1.sshConnectionCount()).toBe(before);
  });

  it("masquerades the client out of the uplink: the WAN sees the host's uplink address", async () => {
    admin = await adminTable(h1);
    expect(await ipForward(h1)).toBe("0");
    expect((await engine.up([await guestnat()])).steps.map((s) => s.op)).toEqual(["create"]);
    expect(engine.state.get("nat")?.outputs).toMatchObject({
      table: "pulumi_hv_guestnat",
      activeBackend: "nftables",
      unmanagedRules: [],
    });
    expect(await ipForward(h1)).toBe("1");
    expect(await sourceSeenByWan(h1, 7001)).toBe(uplinkAddress(h1));
    expect(await nftTables(h1)).toEqual(["table inet admin_filter", "table ip pulumi_hv_guestnat"]);
    expect(await adminTable(h1)).toBe(admin);
  });

  it("adds a port forward in place: a connection from the WAN reaches the client's service", async () => {
    const res = [await guestnat({ portForwards: [portForward] })];
    expect((await engine.preview(res)).steps.map((s) => s.op)).toEqual(["update"]);
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["update"]);
    // the WAN connects to the host's uplink address; the service listens on port 80 in the client
    const seen = await connectionSeenByServer(
      (a) => inClient(h1, a, 25_000),
      (a) => wan.exec(a),
      {
        address: uplinkAddress(h1),
        port: 8080,
        listenPort: 80,
      },
    );
    expect(seen.local).toBe(clientAddress(h1));
    // DNAT keeps the WAN client's own address as the source
    expect(seen.peer).toBe(h1.wanGateway);
    expect(await adminTable(h1)).toBe(admin);
  });

  it("reports a table flushed by hand at refresh, and the next up restores it", async () => {
    await ok(h1.exec(["nft", "flush", "table", "ip", "pulumi_hv_guestnat"]));
    const { steps } = await engine.refresh();
    expect(steps).toEqual([expect.objectContaining({ op: "refresh-changed", name: "nat" })]);
    expect(engine.state.get("nat")?.outputs).toMatchObject({
      masquerade: false,
      forward: false,
      portForwards: [],
    });
    const res = [await guestnat({ portForwards: [portForward] })];
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["update"]);
    expect(engine.state.get("nat")?.outputs).toMatchObject({
      masquerade: true,
      forward: true,
      portForwards: [portForward],
    });
    expect(await sourceSeenByWan(h1, 7002)).toBe(uplinkAddress(h1));
  });

  it("switches ip_forward back only when the last rule that claimed it goes", async () => {
    const other = await natSpec(h1, "other", {
      name: "othernat",
      sourceCidr: `${NET_2}.0/24`,
      masquerade: true,
    });
    const both = [await guestnat({ portForwards: [portForward] }), other];
    expect((await engine.up(both)).steps.map((s) => `${s.op} ${s.name}`)).toEqual([
      "same nat",
      "create other",
    ]);
    expect((await engine.up([other])).steps.map((s) => `${s.op} ${s.name}`)).toEqual([
      "same other",
      "delete nat",
    ]);
    expect(await ipForward(h1)).toBe("1");
    expect(await nftTables(h1)).toEqual(["table inet admin_filter", "table ip pulumi_hv_othernat"]);
    expect((await engine.destroy()).steps.map((s) => `${s.op} ${s.name}`)).toEqual([
      "delete other",
    ]);
    expect(await ipForward(h1)).toBe("0");
    expect(await nftTables(h1)).toEqual(["table inet admin_filter"]);
    expect(await adminTable(h1)).toBe(admin);
  });

  it("refuses a forward of sshd's port on every interface, and not of another program's", async () => {
    // a listener that is not sshd (perl, from perl-base), on every address of the host
    const pid = (
      await ok(
        h1.exec([
          "sh",
          "-c",
          `perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 1, ReuseAddr => 1) or die; sleep 600' "$1" </dev/null >/dev/null 2>&1 & echo $!`,
          "sh",
          "2323",
        ]),
      )
    ).trim();
    try {
      // listening before the plan looks, or the second forward below would pass for nothing
      for (let i = 0; !(await ok(h1.exec(["ss", "-Hltn", "sport = :2323"]))).trim(); i++) {
        if (i > 100) throw new Error("the perl listener did not start");
        await new Promise((r) => setTimeout(r, 50));
      }
      const forward = (hostPort: number) => forwardSpec("fwd", "fwdnat", hostPort);
      // the lab's sshd listens on 22: found from sshd's own open files (sshd-ports.sh)
      await expect(engine.up([await forward(22)])).rejects.toThrow(
        "portForwards[0]: sshd listens on tcp port 22",
      );
      expect(await nftTables(h1)).toEqual(["table inet admin_filter"]);
      expect((await engine.up([await forward(2323)])).steps.map((s) => s.op)).toEqual(["create"]);
      expect((await engine.destroy()).steps.map((s) => s.op)).toEqual(["delete"]);
      expect(await nftTables(h1)).toEqual(["table inet admin_filter"]);
    } finally {
      // a failed assertion above leaves no rule behind for the tests after it
      await engine.destroy().catch(() => undefined);
      await h1.exec(["kill", pid]);
    }
  });

  it("refuses a forward of the port this session came in on, where sshd's ports are not seen", async () => {
    // The host's sshd by another name (its binary copied as hvlogin, the host's key and settings)
    // on port 2022: sshd-ports.sh does not find its listener, as with a socket that systemd holds
    // for an sshd per connection. The provider logs in through it; $SSH_CONNECTION names 2022.
    const hd = `${lab.stateDir}/${h1.name}`;
    const config = (await readFile(`${hd}/sshd_config`, "utf8"))
      .replace(`ListenAddress ${h1.address}:22`, `ListenAddress ${h1.address}:2022`)
      .replace("PidFile /run/sshd.pid", "PidFile /run/hvlogin.pid");
    expect(config).toContain(":2022\n");
    await writeFile(`${hd}/hvlogin_config`, config, { mode: 0o600 });
    await copyFile("/usr/sbin/sshd", `${hd}/hvlogin`);
    // without -D it forks into the background once it listens, and writes its pid file
    await ok(h1.exec([`${hd}/hvlogin`, "-f", `${hd}/hvlogin_config`, "-E", `${hd}/hvlogin.log`]));
    let pid = "";
    for (let i = 0; !/^\d+$/.test(pid); i++) {
      if (i > 100) throw new Error("hvlogin wrote no pid file");
      pid = (await h1.exec(["cat", "/run/hvlogin.pid"])).stdout.trim();
      if (!/^\d+$/.test(pid)) await new Promise((r) => setTimeout(r, 50));
    }
    try {
      const forward = (hostPort: number) =>
        forwardSpec("sessfwd", "sessnat", hostPort, {
          connection: { ...h1.connection(), port: 2022 },
        });
      await expect(engine.up([await forward(2022)])).rejects.toThrow(
        "portForwards[0]: this SSH session came in on tcp port 2022, and a forward of it without inInterface sends every login to the host on to",
      );
      expect(await nftTables(h1)).toEqual(["table inet admin_filter"]);
      // sshd's own port is still found from its open files, whichever port the session uses
      await expect(engine.up([await forward(22)])).rejects.toThrow(
        "portForwards[0]: sshd listens on tcp port 22",
      );
      expect(await nftTables(h1)).toEqual(["table inet admin_filter"]);
    } finally {
      await engine.destroy().catch(() => undefined);
      await h1.exec(["kill", pid]);
    }
  });
});

describe("NatRule with iptables", () => {
  const ADMIN_RULES = [
    "-A FORWARD -s 10.9.9.0/24 -m comment --comment admin-keep -j ACCEPT",
    "-A POSTROUTING -s 10.9.9.0/24 -o wan0 -j MASQUERADE",
  ];
  const iptablesSave = async (h: LabHost): Promise<string[]> =>
    (await ok(h.exec(["iptables-save"])))
      .split("\n")
      .filter((l) => l.startsWith("-A ") || l.startsWith(":PHV"));

  it("masquerades with its own chains and removes only its own rules", async () => {
    await ok(
      h2.exec([
        "iptables",
        "-A",
        "FORWARD",
        "-s",
        "10.9.9.0/24",
        "-m",
        "comment",
        "--comment",
        "admin-keep",
        "-j",
        "ACCEPT",
      ]),
    );
    await ok(
      h2.exec([
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.9.9.0/24",
        "-o",
        "wan0",
        "-j",
        "MASQUERADE",
      ]),
    );
    const res = [
      await natSpec(h2, "ipt", {
        name: "ipt",
        sourceCidr: `${NET_1}.0/24`,
        masquerade: true,
        forward: true,
        backend: "iptables",
      }),
    ];
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["create"]);
    expect(engine.state.get("ipt")?.outputs).toMatchObject({
      table: "PHV-ipt",
      activeBackend: "iptables",
    });
    expect(await ipForward(h2)).toBe("1");
    expect(await sourceSeenByWan(h2, 7003)).toBe(uplinkAddress(h2));
    const saved = await iptablesSave(h2);
    expect(saved).toEqual(
      expect.arrayContaining([
        ...ADMIN_RULES,
        `-A PHV-ipt-POST -s ${NET_1}.0/24 -o wan0 -j MASQUERADE`,
      ]),
    );
    // the provider's jumps come first, ahead of the admin's rules
    expect(saved.filter((l) => l.startsWith("-A FORWARD"))[0]).toBe(
      '-A FORWARD -m comment --comment "pulumi-hypervisor natrule ipt" -j PHV-ipt-FWD',
    );
    expect((await nftTables(h2)).some((t) => t.includes("pulumi_hv"))).toBe(false);
    // a second up finds nothing to do
    expect((await engine.up(res)).steps.map((s) => s.op)).toEqual(["same"]);

    expect((await engine.destroy()).steps.map((s) => s.op)).toEqual(["delete"]);
    expect(await iptablesSave(h2)).toEqual(ADMIN_RULES);
    expect(await ipForward(h2)).toBe("0");
  });
});
