import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";

/**
 * Linux interface names: at most 15 bytes (IFNAMSIZ - 1); the kernel also refuses "." and "..", '/',
 * ':' and whitespace. A leading '-' the kernel takes, but `ip`, dnsmasq and QEMU would read the
 * name as an option, so it is refused too.
 */
export const InterfaceName = z
  .string()
  .regex(
    /^[A-Za-z0-9_.-]{1,15}$/,
    "must be 1 to 15 characters of letters, digits, '_', '.' or '-' (a Linux interface name)",
  )
  .refine((s) => s !== "." && s !== "..", "must not be '.' or '..'")
  .refine(
    (s) => !s.startsWith("-"),
    "must not start with '-' (commands would read it as an option)",
  );

/** A unicast MAC address written as six colon-separated hex octets. */
export const MacAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/, "must be six hex octets separated by ':'")
  .refine(
    (m) => (parseInt(m.slice(0, 2), 16) & 1) === 0,
    "must be a unicast MAC (first octet even)",
  )
  .transform((m) => m.toLowerCase());

/** Returns the IPv6 address in the compressed lowercase form that `ip` prints. */
export function canonicalIPv6(address: string): string {
  const [head = "", tail] = address.toLowerCase().split("::") as [string, string | undefined];
  const parse = (s: string): string[] => (s === "" ? [] : s.split(":"));
  let groups = parse(head);
  const rest = tail === undefined ? [] : parse(tail);
  const last = rest.length ? rest[rest.length - 1] : groups[groups.length - 1];
  if (last !== undefined && last.includes(".")) {
    // an embedded IPv4 tail counts as two groups
    const o = last.split(".").map(Number);
    const v4 = [((o[0] ?? 0) << 8) | (o[1] ?? 0), ((o[2] ?? 0) << 8) | (o[3] ?? 0)].map((n) =>
      n.toString(16),
    );
    if (rest.length) rest.splice(rest.length - 1, 1, ...v4);
    else groups.splice(groups.length - 1, 1, ...v4);
  }
  if (tail !== undefined) {
    groups = [...groups, ...Array<string>(8 - groups.length - rest.length).fill("0"), ...rest];
  }
  const words = groups.map((g) => parseInt(g, 16).toString(16));
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}

/** Returns the CIDR in the form `ip` prints (IPv6 compressed), or undefined when it is not a CIDR. */
export function canonicalCidr(cidr: string): string | undefined {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(cidr);
  if (!m) return undefined;
  const [, address = "", prefix = ""] = m;
  const bits = Number(prefix);
  if (isIPv4(address) && bits <= 32 && String(bits) === prefix) return `${address}/${bits}`;
  if (isIPv6(address) && bits <= 128 && String(bits) === prefix)
    return `${canonicalIPv6(address)}/${bits}`;
  return undefined;
}

/** Returns why an address (canonical, valid) cannot be an interface's own host address, or undefined. */
export function interfaceAddressProblem(address: string): string | undefined {
  if (ipFamilyOf(address) === 4) {
    const first = Number(address.split(".")[0]);
    if (address === "0.0.0.0") return "is the unspecified address, not a host address";
    if (first === 0) return "is in 0.0.0.0/8 (this network), not a host address";
    if (first === 127) return "is a loopback address (127.0.0.0/8 belongs to lo)";
    if (first >= 224 && first <= 239) return "is a multicast address, not a host address";
    if (address === "255.255.255.255")
      return "is the limited broadcast address, not a host address";
    return undefined;
  }
  if (address === "::") return "is the unspecified address, not a host address";
  if (address === "::1") return "is the loopback address (::1 belongs to lo)";
  if (/^ff[0-9a-f]{2}:/.test(address)) return "is a multicast address, not a host address";
  return undefined;
}

/**
 * An interface address with its prefix length ("198.18.100.1/24", "2001:db8::1/64"), canonicalised;
 * a host address: no zone (`%eth0`), not loopback, unspecified or multicast.
 */
export const Cidr = z.string().transform((s, ctx) => {
  if (/^[^/]*%/.test(s)) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(s)} has a zone index (%...); an interface address has none, the interface is the zone`,
    });
    return z.NEVER;
  }
  const c = canonicalCidr(s);
  if (c === undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(s)} is not a CIDR` });
    return z.NEVER;
  }
  const problem = interfaceAddressProblem(c.split("/")[0] ?? "");
  if (problem !== undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(s)} ${problem}` });
    return z.NEVER;
  }
  return c;
});

/** An IPv4 address in dotted-quad form. */
export const Ipv4Address = z
  .string()
  .refine(isIPv4, { error: (i) => `${JSON.stringify(i.input)} is not an IPv4 address` });

/** Returns the numeric value of an IPv4 address. */
export function ipv4ToNumber(address: string): number {
  return address.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/** Returns the dotted-quad form of a 32-bit number. */
export function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** Returns the network address of an IPv4 address under a prefix length ("198.18.140.0" for .1, 24). */
export function ipv4NetworkAddress(address: string, bits: number): string {
  const size = 2 ** (32 - bits);
  return numberToIpv4(Math.floor(ipv4ToNumber(address) / size) * size);
}

/** Returns the IPv4 CIDR with its host bits cleared ("198.18.140.0/24" for .1, 24). */
export function ipv4NetworkCidr(address: string, bits: number): string {
  return `${ipv4NetworkAddress(address, bits)}/${bits}`;
}

/** Returns the dotted netmask of a prefix length ("255.255.255.0" for 24). */
export function netmaskOf(bits: number): string {
  return numberToIpv4(2 ** 32 - 2 ** (32 - bits));
}

/** Returns the prefix length of a dotted netmask, or undefined when it is not one. */
export function prefixOfNetmask(mask: string): number | undefined {
  if (!isIPv4(mask)) return undefined;
  for (let bits = 0; bits <= 32; bits++) if (netmaskOf(bits) === mask) return bits;
  return undefined;
}

/** An IPv4 network; host bits are cleared, so a bridge address ("198.18.140.1/24") names its subnet. */
export const Ipv4Cidr = z.string().transform((s, ctx) => {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(s);
  const bits = m ? Number(m[2]) : NaN;
  if (!m || !isIPv4(m[1] ?? "") || bits > 32 || String(bits) !== m[2]) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(s)} is not an IPv4 CIDR (like 198.18.140.0/24)`,
    });
    return z.NEVER;
  }
  return ipv4NetworkCidr(m[1] ?? "", bits);
});

/** Returns true when the IPv4 address lies in the IPv4 CIDR's network. */
export function ipv4InCidr(address: string, cidr: string): boolean {
  const [net = "", bits = "32"] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  const base = Math.floor(ipv4ToNumber(net) / size) * size;
  const a = ipv4ToNumber(address);
  return a >= base && a < base + size;
}

/** Returns why an address cannot be a host in the network (outside, network or broadcast), or undefined. */
export function hostAddressProblem(address: string, network: string): string | undefined {
  if (!ipv4InCidr(address, network)) return `${address} is outside the subnet ${network}`;
  const [base = "", bits = "32"] = network.split("/");
  const first = ipv4ToNumber(ipv4NetworkAddress(base, Number(bits)));
  const last = first + 2 ** (32 - Number(bits)) - 1;
  const a = ipv4ToNumber(address);
  if (a === first) return `${address} is the network address of ${network}`;
  if (a === last) return `${address} is the broadcast address of ${network}`;
  return undefined;
}

/** Returns 6 for an IPv6 address and 4 otherwise (for addresses already validated). */
export function ipFamilyOf(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

/** Returns a single address in the form `ip -j route show` prints for a host route, or undefined. */
export function canonicalHostAddress(s: string): string | undefined {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(s);
  if (!m) return undefined;
  const [, address = "", prefix] = m;
  if (isIPv4(address) && (prefix === undefined || prefix === "32")) return address;
  if (isIPv6(address) && (prefix === undefined || prefix === "128")) return canonicalIPv6(address);
  return undefined;
}
