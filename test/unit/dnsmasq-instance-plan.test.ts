import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingLinkOf } from "../support/plan-error";
import "../../provider/src/apply";
import { dnsmasqInstanceModule } from "../../provider/src/resources/dnsmasq-instance";
import {
  parseDnsmasqState,
  parseExposed,
  parseProcesses,
} from "../../provider/src/resources/dnsmasq-instance/observe";
import {
  argvWithCachedScripts,
  scriptArgv,
  scriptBody,
  scriptIn,
} from "../../provider/src/host/script";
import { planDnsmasqInstance } from "../../provider/src/resources/dnsmasq-instance/plan";
import {
  parseDhcpHosts,
  parseDnsmasqConf,
  parseLeases,
  renderDhcpHosts,
  renderDnsmasqConf,
} from "../../provider/src/resources/dnsmasq-instance/render";
import {
  DnsmasqInstanceInputs,
  leaseSeconds,
  type DnsmasqState,
} from "../../provider/src/resources/dnsmasq-instance/schema";

const RELOAD = "resources/dnsmasq-instance/dnsmasq-reload.sh";
const START = "resources/dnsmasq-instance/dnsmasq-start.sh";
const STOP = "resources/dnsmasq-instance/dnsmasq-stop.sh";

import { ALPHA, BETA, GAMMA, guests } from "../fixtures/dnsmasq-capture-inputs";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");
/** The probe's real output (see test/fixtures/README.md) for instance `name`. */
const probed = (
  situation: "running" | "absent" | "nopidfile" | "dead",
  name = "guests",
): DnsmasqState => parseDnsmasqState(name, fixture(`dnsmasq-probe-${situation}.txt`));

const GUESTS_CONF = [
  "# managed by pulumi-hypervisor: dnsmasq instance guests; edits are overwritten",
  "interface=br0",
  "bind-dynamic",
  "except-interface=lo",
  "no-hosts",
  "no-poll",
  "pid-file=/run/pulumi-hypervisor/dnsmasq/guests/dnsmasq.pid",
  "dhcp-leasefile=/var/lib/pulumi-hypervisor/dnsmasq/guests/dnsmasq.leases",
  "dhcp-hostsfile=/etc/pulumi-hypervisor/dnsmasq/guests/dhcp-hosts",
  "dhcp-authoritative",
  "dhcp-range=198.18.130.100,198.18.130.150,255.255.255.0,1h",
  "dhcp-option=option:router,198.18.130.1",
  "dhcp-option=option:dns-server,198.18.130.1",
  "domain=lab.test",
  "local=/lab.test/",
  "",
].join("\n");

const CONF = "/etc/pulumi-hypervisor/dnsmasq/guests/dnsmasq.conf";
const HOSTS = "/etc/pulumi-hypervisor/dnsmasq/guests/dhcp-hosts";
const DIRS = [
  "/etc/pulumi-hypervisor/dnsmasq/guests",
  "/run/pulumi-hypervisor/dnsmasq/guests",
  "/var/lib/pulumi-hypervisor/dnsmasq/guests",
];
const PID = "/run/pulumi-hypervisor/dnsmasq/guests/dnsmasq.pid";
const LEASES = "/var/lib/pulumi-hypervisor/dnsmasq/guests/dnsmasq.leases";

describe("renderDnsmasqConf", () => {
  it("binds to the interface only and keeps every file under the provider's paths", () => {
    expect(renderDnsmasqConf(guests())).toBe(GUESTS_CONF);
  });

  it("turns DNS off with port=0 and leaves the netmask to the interface without a subnet", () => {
    expect(
      renderDnsmasqConf(
        DnsmasqInstanceInputs.parse({
          name: "lab2",
          interface: "br2",
          dhcpRange: { start: "198.18.132.100", end: "198.18.132.120" },
          dns: false,
        }),
      ),
    ).toBe(
      [
        "# managed by pulumi-hypervisor: dnsmasq instance lab2; edits are overwritten",
        "interface=br2",
        "bind-dynamic",
        "except-interface=lo",
        "no-hosts",
        "port=0",
        "no-resolv",
        "pid-file=/run/pulumi-hypervisor/dnsmasq/lab2/dnsmasq.pid",
        "dhcp-leasefile=/var/lib/pulumi-hypervisor/dnsmasq/lab2/dnsmasq.leases",
        "dhcp-hostsfile=/etc/pulumi-hypervisor/dnsmasq/lab2/dhcp-hosts",
        "dhcp-authoritative",
        "dhcp-range=198.18.132.100,198.18.132.120,1h",
        "",
      ].join("\n"),
    );
  });

  it("writes static leases as dhcp-hostsfile lines, hostname optional", () => {
    expect(renderDhcpHosts([ALPHA, GAMMA])).toBe(
      "52:54:00:13:00:01,198.18.130.11,alpha\n52:54:00:13:00:03,198.18.130.13\n",
    );
    expect(renderDhcpHosts([])).toBe("");
  });

  it("reads back what it renders, so refresh reports no drift", () => {
    const d = guests({
      staticLeases: [ALPHA, GAMMA],
      subnet: "198.18.128.0/22",
      dhcpRange: { start: "198.18.129.1", end: "198.18.129.9", leaseTime: "infinite" },
    });
    expect(parseDnsmasqConf(renderDnsmasqConf(d))).toEqual({
      interface: "br0",
      subnet: "198.18.128.0/22",
      dhcpRange: { start: "198.18.129.1", end: "198.18.129.9", leaseTime: "infinite" },
      router: "198.18.130.1",
      dnsServers: ["198.18.130.1"],
      domain: "lab.test",
      dns: true,
    });
    expect(parseDhcpHosts(renderDhcpHosts(d.staticLeases))).toEqual(d.staticLeases);
  });
});

describe("parsing the real probe output", () => {
  it("finds the running daemon by its pid file and command line, and its leases", () => {
    const s = probed("running");
    expect(s.pid).toBe(4704);
    expect(s.strays).toEqual([]);
    expect(s.config).toBe(GUESTS_CONF);
    expect(s.hosts).toBe(
      "52:54:00:13:00:01,198.18.130.11,alpha\n52:54:00:13:00:02,198.18.130.12,beta\n",
    );
    expect(s.leases).toEqual([
      { expires: 1795384851, mac: "52:54:00:13:00:03", ip: "198.18.130.132" },
      { expires: 1795384848, mac: "52:54:00:13:00:01", ip: "198.18.130.11", hostname: "alpha" },
    ]);
    expect(s.dirs).toEqual({ config: true, run: true, data: true });
    expect(s.interfaces["br0"]).toEqual(["198.18.130.1/24"]);
    expect(s.interfaces["dcalpha"]).toEqual([]);
    expect(s.otherInstances).toEqual({ lab2: "br2" });
  });

  it("reads an absent instance as absent, with the instances around it", () => {
    const s = probed("absent", "nope");
    expect(s).toMatchObject({
      pid: undefined,
      strays: [],
      config: undefined,
      hosts: undefined,
      leases: [],
      dirs: { config: false, run: false, data: false },
    });
    expect(s.otherInstances).toEqual({ guests: "br0", lab2: "br2" });
    expect(dnsmasqInstanceModule.exists(s)).toBe(false);
  });

  it("reads a daemon that runs its config without a pid file as a stray", () => {
    expect(probed("nopidfile")).toMatchObject({ pid: undefined, strays: [4704] });
  });

  it("reads a killed daemon (stale pid file) as not running, its files still there", () => {
    const s = probed("dead");
    expect(s).toMatchObject({
      pid: undefined,
      strays: [],
      config: GUESTS_CONF,
      dirs: { config: true, run: true, data: true },
    });
    expect(s.leases).toHaveLength(2);
    expect(dnsmasqInstanceModule.exists(s)).toBe(false);
  });

  it("ignores dnsmasq's TCP children, zombies and other configs", () => {
    const child =
      "9001 4704 S dnsmasq\x1f--conf-file=/etc/pulumi-hypervisor/dnsmasq/guests/dnsmasq.conf\x1f\n";
    const zombie = "9002 1 Z \n";
    const text = fixture("dnsmasq-probe-running.txt").replace(
      "--pulumi-hypervisor-- pidfile",
      `${child}${zombie}--pulumi-hypervisor-- pidfile`,
    );
    expect(parseDnsmasqState("guests", text)).toMatchObject({ pid: 4704, strays: [] });
    expect(parseProcesses(child + zombie)).toEqual([
      { pid: 9001, ppid: 4704, argv: ["dnsmasq", `--conf-file=${CONF}`] },
    ]);
    // the dnsmasq the provider does not own is no instance's, not even a stray
    expect(probed("running", "foreign")).toMatchObject({ pid: undefined, strays: [] });
  });

  it("reads only IPv4 leases from a lease file that also holds DHCPv6 ones", () => {
    const file =
      "0 52:54:00:13:00:01 198.18.130.11 alpha *\nduid 00:01:00:01:2c:aa:bb:cc\n1795384851 1234 2001:db8::5 v6host 00:02\n";
    expect(parseLeases(file)).toEqual([
      { expires: 0, mac: "52:54:00:13:00:01", ip: "198.18.130.11", hostname: "alpha" },
    ]);
  });

  it("fails loudly on output it does not understand", () => {
    expect(() =>
      parseDnsmasqState(
        "guests",
        fixture("dnsmasq-probe-running.txt").split("--pulumi-hypervisor-- dirs")[0] ?? "",
      ),
    ).toThrow(/unexpected output of the dnsmasq probe: no section "addresses"/);
    const bad = fixture("dnsmasq-probe-running.txt").replace(
      /addresses\n.*\n/,
      'addresses\n[{"ifname": 3}]\n',
    );
    expect(() => parseDnsmasqState("guests", bad)).toThrow(/unexpected output of ip -j addr show/);
  });

  it("reports the observed inputs exactly as given when nothing drifted", () => {
    const d = guests();
    expect(dnsmasqInstanceModule.observedInputs(probed("running"), d)).toEqual({
      ...d,
      subnet: "198.18.130.0/24",
      domain: "lab.test",
      router: "198.18.130.1",
    });
    expect(dnsmasqInstanceModule.outputs(probed("running"))).toEqual({
      pid: 4704,
      configPath: CONF,
      leasesPath: "/var/lib/pulumi-hypervisor/dnsmasq/guests/dnsmasq.leases",
      leases: probed("running").leases,
      persistedBy: "none",
      persistedDrift: undefined,
    });
  });
});

describe("planDnsmasqInstance", () => {
  it("is empty when the running daemon matches", () => {
    expect(planDnsmasqInstance(guests(), probed("running"))).toEqual([]);
  });

  it("makes files an older version left world-readable private, without a restart", () => {
    const LEASES = "/var/lib/pulumi-hypervisor/dnsmasq/guests/dnsmasq.leases";
    expect(parseExposed(`640 ${CONF}\n644 ${HOSTS}\n600 ${LEASES}\n604 /x\n`)).toEqual([
      HOSTS,
      "/x",
    ]);
    expect(parseExposed(undefined)).toEqual([]);
    const old = { ...probed("running"), exposed: [CONF, HOSTS, LEASES] };
    const fix = (files: string[]) => ({
      summary: `make the files of dnsmasq guests readable by root and dnsmasq's group only (${files.join(", ")})`,
      script: { name: "resources/dnsmasq-instance/dnsmasq-private.sh", args: files },
    });
    expect(planDnsmasqInstance(guests(), old)).toEqual([fix([CONF, HOSTS, LEASES])]);
    // a reload rewrites the hosts file privately anyway
    expect(planDnsmasqInstance(guests({ staticLeases: [ALPHA] }), old)).toEqual([
      expect.objectContaining({ script: expect.objectContaining({ name: RELOAD }) as unknown }),
      fix([CONF, LEASES]),
    ]);
    expect(scriptBody("resources/dnsmasq-instance/dnsmasq-private.sh")).toContain('private "$@"');
  });

  it("applies a static lease change live: hosts file and SIGHUP, no restart", () => {
    expect(
      planDnsmasqInstance(guests({ staticLeases: [ALPHA, BETA, GAMMA] }), probed("running")),
    ).toEqual([
      {
        summary:
          "write the static leases of dnsmasq guests and reload them (SIGHUP to pid 4704; no restart, leases kept)",
        script: { name: RELOAD, args: ["4704", CONF, HOSTS] },
        stdin:
          "52:54:00:13:00:01,198.18.130.11,alpha\n52:54:00:13:00:02,198.18.130.12,beta\n52:54:00:13:00:03,198.18.130.13\n",
      },
    ]);
    expect(planDnsmasqInstance(guests({ staticLeases: [] }), probed("running"))).toEqual([
      expect.objectContaining({
        script: { name: RELOAD, args: ["4704", CONF, HOSTS] },
        stdin: "",
      }),
    ]);
  });

  it("restarts on a range change, checking the new config first, in one step", () => {
    const d = guests({
      dhcpRange: { start: "198.18.130.100", end: "198.18.130.160", leaseTime: "1h" },
    });
    const conf = GUESTS_CONF.replace("198.18.130.150", "198.18.130.160");
    expect(planDnsmasqInstance(d, probed("running"))).toEqual([
      {
        summary:
          "check (dnsmasq --test) and install the config of dnsmasq guests, and restart it on br0 (pid 4704; leases kept)",
        script: {
          name: START,
          args: [CONF, HOSTS, ...DIRS, PID, LEASES, "4704", String(conf.length)],
        },
        stdin:
          conf + "52:54:00:13:00:01,198.18.130.11,alpha\n52:54:00:13:00:02,198.18.130.12,beta\n",
      },
    ]);
    // the script tests the new config before it stops the running daemon
    expect(scriptBody(START).indexOf("dnsmasq --test")).toBeLessThan(
      scriptBody(START).indexOf("then stop; fi"),
    );
  });

  it("restarts on an interface change too", () => {
    const steps = planDnsmasqInstance(
      guests({
        interface: "br1",
        subnet: "198.18.131.0/24",
        dhcpRange: { start: "198.18.131.100", end: "198.18.131.150" },
        staticLeases: [],
        router: "198.18.131.1",
        dnsServers: [],
      }),
      probed("running"),
    );
    expect(steps.map((s) => s.summary)).toEqual([
      "check (dnsmasq --test) and install the config of dnsmasq guests, and restart it on br1 (pid 4704; leases kept)",
    ]);
  });

  it("starts a killed daemon from its files", () => {
    expect(planDnsmasqInstance(guests(), probed("dead"))).toEqual([
      {
        summary:
          "check (dnsmasq --test) and install the config of dnsmasq guests, and start it on br0",
        script: {
          name: START,
          args: [CONF, HOSTS, ...DIRS, PID, LEASES, "", String(GUESTS_CONF.length)],
        },
        stdin:
          GUESTS_CONF +
          "52:54:00:13:00:01,198.18.130.11,alpha\n52:54:00:13:00:02,198.18.130.12,beta\n",
      },
    ]);
  });

  it("stops a daemon running its config outside the pid file before starting one", () => {
    expect(planDnsmasqInstance(guests(), probed("nopidfile"))).toEqual([
      {
        summary:
          "stop dnsmasq guests (pid 4704) (runs this instance's config but is not in its pid file)",
        script: { name: STOP, args: ["4704", CONF] },
      },
      expect.objectContaining({
        summary:
          "check (dnsmasq --test) and install the config of dnsmasq guests, and start it on br0",
      }),
    ]);
  });

  it("creates an instance from nothing on a free interface", () => {
    const d = DnsmasqInstanceInputs.parse({
      name: "nope",
      interface: "br1",
      dhcpRange: { start: "198.18.131.200", end: "198.18.131.210" },
      staticLeases: [{ mac: "52:54:00:13:00:09", ip: "198.18.131.9" }],
    });
    const steps = planDnsmasqInstance(d, probed("absent", "nope"));
    expect(steps).toEqual([
      {
        summary:
          "check (dnsmasq --test) and install the config of dnsmasq nope, and start it on br1",
        script: {
          name: START,
          args: [
            "/etc/pulumi-hypervisor/dnsmasq/nope/dnsmasq.conf",
            "/etc/pulumi-hypervisor/dnsmasq/nope/dhcp-hosts",
            "/etc/pulumi-hypervisor/dnsmasq/nope",
            "/run/pulumi-hypervisor/dnsmasq/nope",
            "/var/lib/pulumi-hypervisor/dnsmasq/nope",
            "/run/pulumi-hypervisor/dnsmasq/nope/dnsmasq.pid",
            "/var/lib/pulumi-hypervisor/dnsmasq/nope/dnsmasq.leases",
            "",
            String(renderDnsmasqConf(d).length),
          ],
        },
        stdin: renderDnsmasqConf(d) + "52:54:00:13:00:09,198.18.131.9\n",
      },
    ]);
  });

  it("refuses what dnsmasq could not serve on this host, naming the property", () => {
    const nope = (over: Record<string, unknown>) =>
      DnsmasqInstanceInputs.parse({
        name: "nope",
        interface: "br1",
        dhcpRange: { start: "198.18.131.200", end: "198.18.131.210" },
        ...over,
      });
    const absent = probed("absent", "nope");
    expect(() => planDnsmasqInstance(nope({ interface: "br0" }), absent)).toThrow(
      'interface br0 is already served by dnsmasq instance "guests"; one instance per interface',
    );
    expect(() => planDnsmasqInstance(nope({ interface: "br9" }), absent)).toThrow(
      'interface "br9" does not exist on the host; create it first (e.g. a Bridge)',
    );
    expect(missingLinkOf(() => planDnsmasqInstance(nope({ interface: "br9" }), absent))).toBe(
      "br9",
    );
    expect(
      missingLinkOf(() => planDnsmasqInstance(nope({ interface: "br0" }), absent)),
    ).toBeUndefined();
    expect(() => planDnsmasqInstance(nope({ interface: "dcalpha" }), absent)).toThrow(
      "interface dcalpha has no IPv4 address in the network of dhcpRange.start 198.18.131.200 (it has: none); add one to the interface, or fix dhcpRange",
    );
    expect(() =>
      planDnsmasqInstance(
        nope({
          subnet: "198.18.133.0/24",
          dhcpRange: { start: "198.18.133.2", end: "198.18.133.9" },
        }),
        absent,
      ),
    ).toThrow(
      "interface br1 has no IPv4 address in subnet 198.18.133.0/24 (it has: 198.18.131.1/24), so dnsmasq would not answer DHCP there",
    );
    expect(() =>
      planDnsmasqInstance(
        nope({ staticLeases: [{ mac: "52:54:00:13:00:09", ip: "198.18.132.9" }] }),
        absent,
      ),
    ).toThrow(
      "staticLeases[0].ip: 198.18.132.9 is outside the subnet 198.18.131.0/24 of interface br1",
    );
    expect(() =>
      planDnsmasqInstance(
        nope({ dhcpRange: { start: "198.18.131.200", end: "198.18.131.255" } }),
        absent,
      ),
    ).toThrow(
      "dhcpRange.end: 198.18.131.255 is the broadcast address of 198.18.131.0/24 of interface br1",
    );
    expect(() =>
      planDnsmasqInstance(
        nope({ staticLeases: [{ mac: "52:54:00:13:00:09", ip: "198.18.131.1" }] }),
        absent,
      ),
    ).toThrow("staticLeases[0].ip: 198.18.131.1 is an address of interface br1 itself");
    expect(() => planDnsmasqInstance(nope({ router: "198.18.130.1" }), absent)).toThrow(
      "router: 198.18.130.1 is outside the subnet 198.18.131.0/24 of interface br1",
    );
  });

  it("deletes its process and its three directories only", () => {
    const rm = {
      summary: `remove the files of dnsmasq guests (${DIRS.join(", ")})`,
      argv: ["rm", "-rf", "--", ...DIRS],
    };
    expect(planDnsmasqInstance(undefined, probed("running"))).toEqual([
      {
        summary: "stop dnsmasq guests (pid 4704)",
        script: { name: STOP, args: ["4704", CONF] },
      },
      rm,
    ]);
    expect(planDnsmasqInstance(undefined, probed("nopidfile"))).toEqual([
      {
        summary: "stop dnsmasq guests (pid 4704) (not in its pid file)",
        script: { name: STOP, args: ["4704", CONF] },
      },
      rm,
    ]);
    expect(planDnsmasqInstance(undefined, probed("dead"))).toEqual([rm]);
    expect(planDnsmasqInstance(undefined, probed("absent", "nope"))).toEqual([]);
  });
});

describe("DnsmasqInstanceInputs", () => {
  const reasons = (over: Record<string, unknown>) => {
    const r = DnsmasqInstanceInputs.safeParse({
      name: "guests",
      interface: "br0",
      dhcpRange: { start: "198.18.130.100", end: "198.18.130.150" },
      ...over,
    });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };

  it("applies defaults", () => {
    expect(
      DnsmasqInstanceInputs.parse({
        name: "g",
        interface: "br0",
        dhcpRange: { start: "198.18.130.100", end: "198.18.130.150" },
      }),
    ).toEqual({
      name: "g",
      interface: "br0",
      dhcpRange: { start: "198.18.130.100", end: "198.18.130.150", leaseTime: "1h" },
      staticLeases: [],
      dnsServers: [],
      dns: true,
      persistence: "auto",
    });
  });

  it("rejects a reversed range, addresses outside the subnet, duplicates and malformed values", () => {
    expect(reasons({ dhcpRange: { start: "198.18.130.150", end: "198.18.130.100" } })).toEqual([
      "dhcpRange: start 198.18.130.150 is after end 198.18.130.100",
    ]);
    expect(
      reasons({
        subnet: "198.18.130.0/24",
        staticLeases: [{ mac: "52:54:00:13:00:09", ip: "198.18.131.9" }],
        router: "198.18.130.255",
      }),
    ).toEqual([
      "staticLeases.0.ip: 198.18.131.9 is outside the subnet 198.18.130.0/24",
      "router: 198.18.130.255 is the broadcast address of 198.18.130.0/24",
    ]);
    expect(
      reasons({
        subnet: "198.18.130.0/24",
        dhcpRange: { start: "198.18.130.0", end: "198.18.130.150" },
      }),
    ).toEqual(["dhcpRange.start: 198.18.130.0 is the network address of 198.18.130.0/24"]);
    expect(
      reasons({
        staticLeases: [ALPHA, { ...BETA, mac: "52:54:00:13:00:01" }, { ...GAMMA, ip: ALPHA.ip }],
      }),
    ).toEqual([
      "staticLeases.1.mac: MAC 52:54:00:13:00:01 is already used by staticLeases[0]",
      "staticLeases.2.ip: address 198.18.130.11 is already used by staticLeases[0]",
    ]);
    expect(reasons({ staticLeases: [ALPHA, { ...BETA, hostname: "ALPHA" }] })).toEqual([
      "staticLeases.1.hostname: hostname ALPHA is already used by staticLeases[0]",
    ]);
    // MACs compare case-insensitively: the schema lowercases them first
    expect(
      reasons({
        staticLeases: [
          ALPHA,
          { ...BETA, mac: "52:54:00:13:00:0A" },
          { ...GAMMA, mac: "52:54:00:13:00:0a" },
        ],
      }),
    ).toEqual(["staticLeases.2.mac: MAC 52:54:00:13:00:0a is already used by staticLeases[1]"]);
    expect(reasons({ staticLeases: [{ ...ALPHA, mac: "52:54:00:13:00" }] })).toEqual([
      "staticLeases.0.mac: must be six hex octets separated by ':'",
    ]);
    expect(reasons({ staticLeases: [{ ...ALPHA, hostname: "-web" }] })[0]).toMatch(
      /^staticLeases\.0\.hostname: must be a DNS label/,
    );
    expect(reasons({ staticLeases: [{ ...ALPHA, hostname: "web.lab" }] })[0]).toMatch(
      /^staticLeases\.0\.hostname: must be a DNS label/,
    );
    expect(reasons({ interface: "br0;reboot" })[0]).toMatch(
      /^interface: must be 1 to 15 characters/,
    );
    expect(reasons({ name: "../x" })[0]).toMatch(/^name: must be 1 to 63 characters/);
    expect(reasons({ name: ".." })[0]).toMatch(/^name: /);
    expect(reasons({ subnet: "198.18.130.7/24" })).toEqual([
      'subnet: "198.18.130.7/24" has host bits set; the network is 198.18.130.0/24',
    ]);
    expect(reasons({ subnet: "198.18.130.0/31" })).toEqual([
      'subnet: "198.18.130.0/31": the prefix length must be from 8 to 30',
    ]);
    expect(reasons({ router: "198.18.130.300" })).toEqual([
      'router: "198.18.130.300" is not an IPv4 address',
    ]);
    expect(
      reasons({
        subnet: "198.18.130.0/24",
        router: "198.18.130.300",
        dhcpRange: { start: "x", end: "198.18.130.9" },
      }),
    ).toEqual([
      'dhcpRange.start: "x" is not an IPv4 address',
      'router: "198.18.130.300" is not an IPv4 address',
    ]);
    expect(reasons({ dnsServers: ["198.18.130.1", "198.18.130.1"] })).toEqual([
      "dnsServers.1: 198.18.130.1 is listed twice",
    ]);
    expect(reasons({ domain: "lab..test" })[0]).toMatch(/^domain: must be a DNS domain name/);
    expect(
      reasons({ dhcpRange: { start: "198.18.130.100", end: "198.18.130.150", leaseTime: "90s" } }),
    ).toEqual(["dhcpRange.leaseTime: must be at least 2 minutes (dnsmasq's minimum)"]);
    expect(
      reasons({
        dhcpRange: { start: "198.18.130.100", end: "198.18.130.150", leaseTime: "1 h" },
      })[0],
    ).toMatch(/^dhcpRange\.leaseTime: must be like "1h"/);
    expect(reasons({ bogus: 1 })[0]).toMatch(/bogus/);
  });

  it("reads lease times in dnsmasq's units", () => {
    expect(["120", "2m", "1h", "1d", "1w", "infinite"].map(leaseSeconds)).toEqual([
      120,
      120,
      3600,
      86400,
      604800,
      Infinity,
    ]);
  });
});

describe("the steps' scripts on a remote shell", () => {
  const SRC = join(__dirname, "../../provider/src");
  it("are sourced in a subshell of their batch, with no shell process of their own", () => {
    for (const name of [
      "dnsmasq-start.sh",
      "dnsmasq-stop.sh",
      "dnsmasq-reload.sh",
      "dnsmasq-private.sh",
    ]) {
      const step = scriptArgv(scriptIn(join(SRC, "resources/dnsmasq-instance"), name, ["a1"]));
      const batch = scriptArgv(
        scriptIn(SRC, "apply-batch.sh", ["0", "0", String(step.length), ...step]),
      );
      // `. HASH ARGS` (the batch sources it), not `sh -c '. "$...HASH"' NAME ARGS`
      expect(argvWithCachedScripts(batch).argv.slice(4), name).toEqual([
        "0",
        "0",
        "3",
        ".",
        expect.stringMatching(/^[0-9a-f]{32}$/),
        "a1",
      ]);
    }
  });
});
