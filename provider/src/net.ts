import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";

/** Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no spaces, slashes or shell metacharacters. */
export const InterfaceName = z
  .string()
  .regex(
    /^[A-Za-z0-9_.-]{1,15}$/,
    "must be 1 to 15 characters of letters, digits, '_', '.' or '-' (a Linux interface name)",
  )
  .refine((s) => s !== "." && s !== "..", "must not be '.' or '..'");

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

/** An interface address with its prefix length ("198.18.100.1/24", "2001:db8::1/64"), canonicalised. */
export const Cidr = z.string().transform((s, ctx) => {
  const c = canonicalCidr(s);
  if (c === undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(s)} is not a CIDR` });
    return z.NEVER;
  }
  return c;
});

/** Returns the numeric value of an IPv4 address. */
export function ipv4ToNumber(address: string): number {
  return address.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/** Returns true when the IPv4 address lies in the IPv4 CIDR's network. */
export function ipv4InCidr(address: string, cidr: string): boolean {
  const [net = "", bits = "32"] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  const base = Math.floor(ipv4ToNumber(net) / size) * size;
  const a = ipv4ToNumber(address);
  return a >= base && a < base + size;
}
