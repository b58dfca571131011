import { describe, expect, it } from "vitest";
import {
  canonicalCidr,
  canonicalHostAddress,
  canonicalIPv6,
  Cidr,
  hostAddressProblem,
  InterfaceName,
  ipFamilyOf,
  Ipv4Address,
  Ipv4Cidr,
  ipv4InCidr,
  ipv4NetworkAddress,
  ipv4NetworkCidr,
  ipv4ToNumber,
  MacAddress,
  netmaskOf,
  numberToIpv4,
  prefixOfNetmask,
} from "../../provider/src/net";

const issues = (r: { success: boolean; error?: { issues: { message: string }[] } }): string[] =>
  r.success ? [] : (r.error?.issues.map((i) => i.message) ?? []);

describe("IPv4 arithmetic", () => {
  it("converts between dotted quads and numbers both ways", () => {
    expect(ipv4ToNumber("0.0.0.0")).toBe(0);
    expect(ipv4ToNumber("198.18.1.2")).toBe(((198 * 256 + 18) * 256 + 1) * 256 + 2);
    expect(ipv4ToNumber("255.255.255.255")).toBe(2 ** 32 - 1);
    for (const a of ["0.0.0.0", "10.0.0.1", "198.18.140.255", "255.255.255.255"]) {
      expect(numberToIpv4(ipv4ToNumber(a))).toBe(a);
    }
  });

  it("names the network as an address or as a CIDR, clearing host bits", () => {
    expect(ipv4NetworkAddress("198.18.140.1", 24)).toBe("198.18.140.0");
    expect(ipv4NetworkAddress("198.18.140.130", 25)).toBe("198.18.140.128");
    expect(ipv4NetworkAddress("10.1.2.3", 8)).toBe("10.0.0.0");
    expect(ipv4NetworkAddress("10.1.2.3", 32)).toBe("10.1.2.3");
    expect(ipv4NetworkAddress("10.1.2.3", 0)).toBe("0.0.0.0");
    expect(ipv4NetworkCidr("198.18.140.1", 24)).toBe("198.18.140.0/24");
    expect(ipv4NetworkCidr("192.168.7.9", 32)).toBe("192.168.7.9/32");
  });

  it("turns prefix lengths into netmasks and back, refusing non-contiguous masks", () => {
    expect(netmaskOf(24)).toBe("255.255.255.0");
    expect(netmaskOf(0)).toBe("0.0.0.0");
    expect(netmaskOf(32)).toBe("255.255.255.255");
    expect(netmaskOf(19)).toBe("255.255.224.0");
    for (let bits = 0; bits <= 32; bits++) expect(prefixOfNetmask(netmaskOf(bits))).toBe(bits);
    expect(prefixOfNetmask("255.0.255.0")).toBeUndefined();
    expect(prefixOfNetmask("not a mask")).toBeUndefined();
  });

  it("knows which addresses lie in a network and which can be hosts in it", () => {
    expect(ipv4InCidr("198.18.140.7", "198.18.140.0/24")).toBe(true);
    expect(ipv4InCidr("198.18.141.7", "198.18.140.0/24")).toBe(false);
    expect(ipv4InCidr("198.18.140.7", "198.18.140.1/24")).toBe(true);
    expect(hostAddressProblem("198.18.140.7", "198.18.140.0/24")).toBeUndefined();
    expect(hostAddressProblem("198.18.140.0", "198.18.140.0/24")).toBe(
      "198.18.140.0 is the network address of 198.18.140.0/24",
    );
    expect(hostAddressProblem("198.18.140.255", "198.18.140.0/24")).toBe(
      "198.18.140.255 is the broadcast address of 198.18.140.0/24",
    );
    expect(hostAddressProblem("198.18.141.1", "198.18.140.0/24")).toBe(
      "198.18.141.1 is outside the subnet 198.18.140.0/24",
    );
  });
});

describe("address forms", () => {
  it("writes IPv6 addresses the way ip prints them", () => {
    expect(canonicalIPv6("2001:DB8:0:0:0:0:0:1")).toBe("2001:db8::1");
    expect(canonicalIPv6("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(canonicalIPv6("::ffff:198.18.1.2")).toBe("::ffff:c612:102");
    expect(canonicalIPv6("0:0:0:0:0:0:0:0")).toBe("::");
  });

  it("canonicalises CIDRs and refuses what is not one", () => {
    expect(canonicalCidr("198.18.1.1/24")).toBe("198.18.1.1/24");
    expect(canonicalCidr("2001:DB8::0:1/64")).toBe("2001:db8::1/64");
    expect(canonicalCidr("198.18.1.1/33")).toBeUndefined();
    expect(canonicalCidr("198.18.1.1/024")).toBeUndefined();
    expect(canonicalCidr("198.18.1.1")).toBeUndefined();
    expect(Cidr.parse("2001:db8:0::1/64")).toBe("2001:db8::1/64");
    expect(issues(Cidr.safeParse("10.0.0.300/24"))).toEqual(['"10.0.0.300/24" is not a CIDR']);
  });

  it("takes single host addresses with or without a host prefix", () => {
    expect(canonicalHostAddress("198.18.120.5")).toBe("198.18.120.5");
    expect(canonicalHostAddress("198.18.120.5/32")).toBe("198.18.120.5");
    expect(canonicalHostAddress("2001:DB8::5/128")).toBe("2001:db8::5");
    expect(canonicalHostAddress("198.18.120.5/24")).toBeUndefined();
    expect(canonicalHostAddress("tap0")).toBeUndefined();
    expect(ipFamilyOf("198.18.120.5")).toBe(4);
    expect(ipFamilyOf("2001:db8::5")).toBe(6);
  });

  it("validates IPv4 addresses and IPv4 networks, clearing host bits of a network", () => {
    expect(Ipv4Address.parse("198.18.1.2")).toBe("198.18.1.2");
    expect(issues(Ipv4Address.safeParse("198.18.1.256"))).toEqual([
      '"198.18.1.256" is not an IPv4 address',
    ]);
    expect(Ipv4Cidr.parse("198.18.140.1/24")).toBe("198.18.140.0/24");
    expect(issues(Ipv4Cidr.safeParse("2001:db8::/64"))).toEqual([
      '"2001:db8::/64" is not an IPv4 CIDR (like 198.18.140.0/24)',
    ]);
  });

  it("validates MAC addresses (unicast, lowercased) and interface names", () => {
    expect(MacAddress.parse("52:54:00:AB:CD:EF")).toBe("52:54:00:ab:cd:ef");
    expect(issues(MacAddress.safeParse("01:00:5e:00:00:01"))).toEqual([
      "must be a unicast MAC (first octet even)",
    ]);
    expect(InterfaceName.safeParse("br0").success).toBe(true);
    expect(InterfaceName.safeParse("a-very-long-name0").success).toBe(false);
    expect(InterfaceName.safeParse("..").success).toBe(false);
    expect(InterfaceName.safeParse("br0;reboot").success).toBe(false);
  });
});

describe("interface names as the kernel and the commands take them", () => {
  it("accepts what Linux names interfaces", () => {
    for (const n of [
      "br0",
      "eth0.100",
      "br-lan",
      "wlp3s0",
      "veth_a",
      "enx001122334455",
      "0",
      "a.b",
    ]) {
      expect(issues(InterfaceName.safeParse(n))).toEqual([]);
    }
  });

  it("refuses what the kernel refuses: too long, '.', '..', '/', ':', whitespace", () => {
    for (const n of ["abcdefghijklmnop", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\n", ""]) {
      expect(InterfaceName.safeParse(n).success).toBe(false);
    }
  });

  it("refuses a leading '-', which ip, dnsmasq and QEMU would read as an option", () => {
    expect(issues(InterfaceName.safeParse("-x"))).toEqual([
      "must not start with '-' (commands would read it as an option)",
    ]);
    expect(issues(InterfaceName.safeParse("--help"))).toEqual([
      "must not start with '-' (commands would read it as an option)",
    ]);
    expect(issues(InterfaceName.safeParse("x-"))).toEqual([]);
  });
});

describe("interface addresses", () => {
  it("refuses a zone index, loopback, unspecified, multicast and broadcast, saying which", () => {
    expect(issues(Cidr.safeParse("fe80::1%eth0/64"))).toEqual([
      '"fe80::1%eth0/64" has a zone index (%...); an interface address has none, the interface is the zone',
    ]);
    expect(issues(Cidr.safeParse("127.0.0.2/8"))).toEqual([
      '"127.0.0.2/8" is a loopback address (127.0.0.0/8 belongs to lo)',
    ]);
    expect(issues(Cidr.safeParse("0.0.0.0/0"))).toEqual([
      '"0.0.0.0/0" is the unspecified address, not a host address',
    ]);
    expect(issues(Cidr.safeParse("0.1.2.3/8"))).toEqual([
      '"0.1.2.3/8" is in 0.0.0.0/8 (this network), not a host address',
    ]);
    expect(issues(Cidr.safeParse("::/0"))).toEqual([
      '"::/0" is the unspecified address, not a host address',
    ]);
    expect(issues(Cidr.safeParse("::1/128"))).toEqual([
      '"::1/128" is the loopback address (::1 belongs to lo)',
    ]);
    expect(issues(Cidr.safeParse("224.0.0.1/24"))).toEqual([
      '"224.0.0.1/24" is a multicast address, not a host address',
    ]);
    expect(issues(Cidr.safeParse("FF02::1/64"))).toEqual([
      '"FF02::1/64" is a multicast address, not a host address',
    ]);
    expect(issues(Cidr.safeParse("255.255.255.255/32"))).toEqual([
      '"255.255.255.255/32" is the limited broadcast address, not a host address',
    ]);
  });

  it("keeps host addresses, link-local and IPv6 ones whose first group only looks like ff", () => {
    for (const a of ["198.18.0.1/15", "10.0.0.1/8", "169.254.1.1/16", "fe80::1/64", "ff::1/64"]) {
      expect(issues(Cidr.safeParse(a))).toEqual([]);
    }
    expect(Cidr.parse("FF::1/64")).toBe("ff::1/64");
  });
});
