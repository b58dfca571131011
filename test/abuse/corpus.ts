// The hostile-input corpus: for each resource and the connection, a valid base and per property
// the values an attacker or a careless operator would send. Every case must fail check naming the
// property it broke (see hostile-input.test.ts).

/** One hostile case: a resource type, the property it breaks and the whole inputs sent. */
export interface HostileCase {
  type: string;
  property: string;
  value: unknown;
  inputs: Record<string, unknown>;
}

const LONG = "a".repeat(5000);

// Shell and option syntax, line breaks, NULs, lookalikes, traversal and wrong types: what any
// name-like string must refuse.
const NAME_LIKE: unknown[] = [
  "",
  " ",
  "-x",
  "--help",
  "br0;touch /tmp/hvab-canary",
  "$(touch /tmp/hvab-canary)",
  "`touch /tmp/hvab-canary`",
  "a|b",
  "a&b",
  "a>b",
  "a\nb",
  "a\r",
  "a\u0000b",
  "a\tb",
  "a b",
  "a'b",
  'a"b',
  "a*",
  "${IFS}",
  "../../etc",
  "/etc/passwd",
  LONG,
  "\u0431r0", // Cyrillic be
  "br\uff10", // fullwidth zero
  "br\u200b0", // zero-width space
  "br\u202e0", // right-to-left override
  42,
  true,
  { a: 1 },
  ["br0"],
];

// What the kernel refuses in a name (dev_valid_name) beyond NAME_LIKE, and a lone or leading '-'.
const IFACE_EXTRA: unknown[] = [
  "abcdefghijklmnop",
  ".",
  "..",
  "a/b",
  "a:b",
  "-",
  "-br0",
  "a\u00a0b",
];

// CIDRs that parse but are no interface's own host address.
const NOT_HOST_ADDRESS: unknown[] = [
  "fe80::1%eth0/64",
  "127.0.0.2/8",
  "0.0.0.0/0",
  "0.1.2.3/8",
  "::/0",
  "::1/128",
  "224.0.0.1/24",
  "ff02::1/64",
  "255.255.255.255/32",
];

const CIDR_BAD: unknown[] = [
  "",
  "10.0.0.300/24",
  "10.0.0.1/33",
  "10.0.0.1/24;touch /tmp/hvab-canary",
  "$(touch /tmp/hvab-canary)",
  "10.0.0.1/24\n",
  "10.0.0.1/24\u0000",
  "-10.0.0.1/24",
  "\uff11\uff10.0.0.1/24",
  "10.0.0/24",
  "::1/129",
  "10.0.0.1/-1",
  LONG,
  24,
  ["10.0.0.1/24"],
];

const IPV4_BAD: unknown[] = [
  "",
  "10.0.0.300",
  "10.0.0.1;touch /tmp/hvab-canary",
  "$(touch /tmp/hvab-canary)",
  "10.0.0.1\n",
  "10.0.0.1\u0000",
  "-10.0.0.1",
  "\uff11\uff10.0.0.1",
  "0x0a.0.0.1",
  "010.0.0.1",
  "10.0.0",
  LONG,
  167772161,
];

const MAC_BAD: unknown[] = [
  "",
  "52:54:00:00:00",
  "52:54:00:00:00:0g",
  "52:54:00:00:00:01;touch /tmp/hvab-canary",
  "$(touch /tmp/hvab-canary)",
  "52:54:00:00:00:01\n",
  "52-54-00-00-00-01\u0000",
  "-52:54:00:00:00:01",
  "52:54:00:00:00:\uff10\uff11",
  "ff:ff:ff:ff:ff:ff",
  "01:00:5e:00:00:01",
  LONG,
  525400000001,
];

const INT_BAD: unknown[] = [-1, 0.5, "1500", 1e12, null, true, "$(touch /tmp/hvab-canary)"];

const BOOL_BAD: unknown[] = ["yes", 1, "true;touch /tmp/hvab-canary"];

const PATH_BAD: unknown[] = [
  "",
  "relative/disk.qcow2",
  "/var/lib/x/../../etc/shadow",
  "/var/lib/a,format=raw,file=/etc/shadow",
  "/var/lib/a\nb",
  "/var/lib/a\u0000b",
  "/var/lib/a\rb",
  `/${"a".repeat(5000)}`,
  "-drive",
  "..",
  42,
];

const ACCOUNT_BAD: unknown[] = [
  "",
  "-1",
  -1,
  4294967295,
  "root;touch /tmp/hvab-canary",
  "$(touch /tmp/hvab-canary)",
  "a b",
  "a\nb",
  "../root",
  "-oroot",
  "\u0440oot", // Cyrillic er
  1.5,
  LONG,
];

/** A case per hostile value of a property, `set` placing the value into a copy of the base. */
function cases(
  type: string,
  base: Record<string, unknown>,
  property: string,
  values: readonly unknown[],
  set: (inputs: Record<string, unknown>, v: unknown) => void = (i, v) => {
    i[property] = v;
  },
): HostileCase[] {
  return values.map((value) => {
    const inputs = structuredClone(base);
    set(inputs, value);
    return { type, property, value, inputs };
  });
}

/** Returns the corpus for a host reached with `connection`. */
export function hostileCorpus(connection: Record<string, unknown>): HostileCase[] {
  const c = { connection };
  const bridge = { ...c, name: "hvab-br0", addresses: ["10.77.0.1/24"] };
  const tap = { ...c, name: "hvab-tap0" };
  const dnsmasq = {
    ...c,
    name: "hvab-d",
    interface: "hvab-br0",
    subnet: "10.77.0.0/24",
    dhcpRange: { start: "10.77.0.100", end: "10.77.0.150" },
  };
  const nat = { ...c, name: "hvab", sourceCidr: "10.77.0.0/24", outInterface: "eth0" };
  const guest = { ...c, name: "hvab-g", running: false };
  const iface = [...NAME_LIKE, ...IFACE_EXTRA];
  const all: HostileCase[] = [
    // Bridge
    ...cases("Bridge", bridge, "name", iface),
    ...cases(
      "Bridge",
      bridge,
      "addresses",
      [...CIDR_BAD, ...NOT_HOST_ADDRESS],
      (i, v) => (i["addresses"] = [v]),
    ),
    ...cases("Bridge", bridge, "mtu", INT_BAD),
    ...cases("Bridge", bridge, "macAddress", MAC_BAD),
    ...cases("Bridge", bridge, "ports", NAME_LIKE.slice(0, 22), (i, v) => (i["ports"] = [v])),
    ...cases("Bridge", bridge, "stp", BOOL_BAD),
    // TapDevice
    ...cases("TapDevice", tap, "name", iface),
    ...cases("TapDevice", tap, "bridge", NAME_LIKE.slice(1, 22)),
    ...cases("TapDevice", tap, "owner", ACCOUNT_BAD),
    ...cases("TapDevice", tap, "group", ACCOUNT_BAD.slice(0, 8)),
    ...cases(
      "TapDevice",
      tap,
      "routed",
      IPV4_BAD.slice(0, 9),
      (i, v) => (i["routed"] = { addresses: [v] }),
    ),
    ...cases("TapDevice", tap, "mtu", INT_BAD.slice(0, 4)),
    ...cases("TapDevice", tap, "routed", IFACE_EXTRA, (i, v) => {
      i["routed"] = { proxyArpInterface: v };
    }),
    // DnsmasqInstance
    ...cases("DnsmasqInstance", dnsmasq, "name", NAME_LIKE.slice(0, 22)),
    ...cases("DnsmasqInstance", dnsmasq, "interface", NAME_LIKE.slice(0, 22)),
    ...cases("DnsmasqInstance", dnsmasq, "subnet", CIDR_BAD.slice(0, 10)),
    ...cases("DnsmasqInstance", dnsmasq, "dhcpRange", IPV4_BAD.slice(0, 9), (i, v) => {
      i["dhcpRange"] = { start: v, end: "10.77.0.150" };
    }),
    ...cases(
      "DnsmasqInstance",
      dnsmasq,
      "dhcpRange",
      ["1s", "1h;x", "$(x)", "-1", "1h\n"],
      (i, v) => {
        i["dhcpRange"] = { start: "10.77.0.100", end: "10.77.0.150", leaseTime: v };
      },
    ),
    ...cases("DnsmasqInstance", dnsmasq, "staticLeases", MAC_BAD.slice(0, 8), (i, v) => {
      i["staticLeases"] = [{ mac: v, ip: "10.77.0.10" }];
    }),
    ...cases(
      "DnsmasqInstance",
      dnsmasq,
      "staticLeases",
      [
        "a b",
        "a;touch /tmp/hvab-canary",
        "$(touch /tmp/hvab-canary)",
        "a\nb",
        "a,b",
        "a=b",
        "-a",
        "a.b",
        "\u0430dmin",
        "x".repeat(64),
      ],
      (i, v) => (i["staticLeases"] = [{ mac: "52:54:00:77:00:10", ip: "10.77.0.10", hostname: v }]),
    ),
    ...cases("DnsmasqInstance", dnsmasq, "router", IPV4_BAD.slice(0, 6)),
    ...cases("DnsmasqInstance", dnsmasq, "dnsServers", IPV4_BAD.slice(0, 6), (i, v) => {
      i["dnsServers"] = [v];
    }),
    ...cases("DnsmasqInstance", dnsmasq, "domain", [
      "",
      "a b",
      "lab;touch /tmp/hvab-canary",
      "$(touch /tmp/hvab-canary)",
      "lab\nconf-file=/etc/shadow",
      "lab,x",
      "-lab",
      "l\u0430b",
      `${"a.".repeat(130)}b`,
      42,
    ]),
    // NatRule
    ...cases("NatRule", nat, "name", NAME_LIKE.slice(0, 22)),
    ...cases("NatRule", nat, "sourceCidr", CIDR_BAD),
    ...cases("NatRule", nat, "outInterface", [...NAME_LIKE.slice(0, 22), ...IFACE_EXTRA]),
    ...cases("NatRule", nat, "snatTo", IPV4_BAD.slice(0, 8)),
    ...cases("NatRule", nat, "portForwards", [0, 65536, -1, "22", 22.5], (i, v) => {
      i["portForwards"] = [
        { protocol: "tcp", hostPort: v, destination: "10.77.0.10", destinationPort: 22 },
      ];
    }),
    ...cases("NatRule", nat, "portForwards", ["icmp", "tcp;x", "TCP", ""], (i, v) => {
      i["portForwards"] = [
        { protocol: v, hostPort: 2222, destination: "10.77.0.10", destinationPort: 22 },
      ];
    }),
    ...cases("NatRule", nat, "portForwards", NAME_LIKE.slice(1, 12), (i, v) => {
      i["portForwards"] = [
        {
          protocol: "tcp",
          hostPort: 2222,
          destination: "10.77.0.10",
          destinationPort: 22,
          inInterface: v,
        },
      ];
    }),
    ...cases("NatRule", nat, "backend", ["nft", "iptables;x", "", 1]),
    // QemuGuest
    ...cases("QemuGuest", guest, "name", NAME_LIKE.slice(0, 22)),
    ...cases("QemuGuest", guest, "memoryMiB", INT_BAD),
    ...cases("QemuGuest", guest, "cpus", [...INT_BAD.slice(0, 4), 1000]),
    ...cases("QemuGuest", guest, "machine", NAME_LIKE.slice(0, 18)),
    ...cases("QemuGuest", guest, "accel", ["xen", "kvm,x", "", "kvm;x"]),
    ...cases("QemuGuest", guest, "disks", PATH_BAD, (i, v) => {
      i["disks"] = [{ path: v, sizeGiB: 1 }];
    }),
    ...cases("QemuGuest", guest, "disks", ["vmdk", "qcow2,x", ""], (i, v) => {
      i["disks"] = [{ path: "/var/lib/pulumi-hypervisor/hvab.img", format: v, sizeGiB: 1 }];
    }),
    ...cases("QemuGuest", guest, "cdrom", PATH_BAD.slice(0, 8)),
    ...cases("QemuGuest", guest, "kernel", PATH_BAD.slice(0, 8)),
    ...cases(
      "QemuGuest",
      guest,
      "kernelArgs",
      ["a\nb", "a\u0000b", "a\u001b[2J", "x".repeat(5000)],
      (i, v) => {
        i["kernel"] = "/boot/vmlinuz";
        i["kernelArgs"] = v;
      },
    ),
    ...cases("QemuGuest", guest, "nics", MAC_BAD.slice(0, 8), (i, v) => {
      i["nics"] = [{ mac: v, bridge: "hvab-br0" }];
    }),
    ...cases("QemuGuest", guest, "nics", NAME_LIKE.slice(1, 10), (i, v) => {
      i["nics"] = [{ mac: "52:54:00:77:00:20", tap: v }];
    }),
    ...cases(
      "QemuGuest",
      guest,
      "nics",
      ["-x", "--help", "-br0", "a:b", "abcdefghijklmnop"],
      (i, v) => {
        i["nics"] = [{ mac: "52:54:00:77:00:21", bridge: v }];
      },
    ),
    ...cases("QemuGuest", guest, "display", [
      "vnc=:1,password=x",
      "sdl",
      "vnc=0.0.0.0:1;x",
      "spice",
      "",
    ]),
    ...cases("QemuGuest", guest, "runAs", ACCOUNT_BAD.slice(0, 10)),
    ...cases("QemuGuest", guest, "bootOrder", ["x", "cc", "cdnaa", "c;x", ""]),
    ...cases("QemuGuest", guest, "shutdownTimeoutSeconds", INT_BAD.slice(0, 5)),
  ];
  // The connection, on a Bridge (every resource shares the one schema).
  const conn = (field: string, values: readonly unknown[]): HostileCase[] =>
    cases("Bridge", bridge, `connection.${field}`, values, (i, v) => {
      i["connection"] = { ...connection, [field]: v };
    });
  all.push(
    ...conn("host", [
      "",
      "-oProxyCommand=touch /tmp/hvab-canary",
      "host;touch /tmp/hvab-canary",
      "$(touch /tmp/hvab-canary)",
      "a b",
      "host\n",
      "host\u0000",
      "h\u0430st",
      "exa_mple..com",
      `${"a".repeat(64)}.com`,
      "x".repeat(300),
      "user@host",
      "host:22",
      "[::1]",
      42,
    ]),
    ...conn("port", [0, 65536, -1, "22", 22.5, "22;x"]),
    ...conn("hostKey", [
      "",
      "ssh-ed25519",
      "ssh-ed25519 AAAA;touch /tmp/hvab-canary",
      "SHA256:",
      "md5:ab",
      42,
    ]),
    ...conn("perDialTimeout", [0, -1, 2147484, 1e12, "15"]),
    ...conn("dialErrorLimit", [0, -1, 1000, 1.5, "10"]),
    ...conn("sudo", ["yes", 1, { password: 42 }, { password: "x", user: "root" }]),
    ...conn("user", ["", 42]),
    ...conn("command", ["touch /tmp/hvab-canary"]),
    ...conn("insecureIgnoreHostKey", ["yes", 1]),
    ...conn("compression", ["yes", 1, "zlib;touch /tmp/hvab-canary"]),
  );
  all.push(
    ...cases(
      "Bridge",
      bridge,
      "connection",
      ["root@host", 42, null],
      (i, v) => (i["connection"] = v),
    ),
  );
  return all;
}
