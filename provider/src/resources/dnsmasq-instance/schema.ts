import { isIPv4 } from "node:net";
import { z } from "zod";
import { Persistence, PersistedBy, type PersistedState } from "../../persist/persistence";
import {
  hostAddressProblem,
  InterfaceName,
  Ipv4Address,
  ipv4NetworkAddress,
  ipv4ToNumber,
  MacAddress,
} from "../../net";

/** An IPv4 network: the network address and a prefix length from 8 to 30 ("198.18.130.0/24"). */
export const Ipv4Network = z.string().superRefine((s, ctx) => {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  const [, address = "", prefix = ""] = m ?? [];
  const bits = Number(prefix);
  if (!m || !isIPv4(address) || String(bits) !== prefix || bits > 32) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(s)} is not an IPv4 CIDR` });
  } else if (bits < 8 || bits > 30) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(s)}: the prefix length must be from 8 to 30`,
    });
  } else if (ipv4NetworkAddress(address, bits) !== address) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(s)} has host bits set; the network is ${ipv4NetworkAddress(address, bits)}/${bits}`,
    });
  }
});

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A DNS label (RFC 1123 host name part): 1-63 letters, digits and '-', not starting or ending with '-'. */
export const Hostname = z
  .string()
  .regex(
    LABEL,
    "must be a DNS label: 1 to 63 letters, digits or '-', not starting or ending with '-'",
  );

/** A DNS domain name: dot-separated DNS labels, at most 253 characters. */
export const DomainName = z
  .string()
  .refine(
    (s) => s.length <= 253 && s.split(".").every((l) => LABEL.test(l)),
    "must be a DNS domain name: dot-separated labels of letters, digits or '-' (at most 253 characters)",
  );

/** dnsmasq's lease time: seconds, or a number with s/m/h/d/w, or "infinite"; at least 2 minutes. */
export const LeaseTime = z
  .string()
  .regex(
    /^(infinite|[1-9][0-9]{0,8}[smhdw]?)$/,
    'must be like "1h", "30m", "3600" (seconds) or "infinite"',
  )
  .refine((t) => leaseSeconds(t) >= 120, "must be at least 2 minutes (dnsmasq's minimum)");

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Returns a lease time in seconds (Infinity for "infinite"). */
export function leaseSeconds(t: string): number {
  if (t === "infinite") return Infinity;
  const unit = UNIT[t.slice(-1)];
  return unit === undefined ? Number(t) : Number(t.slice(0, -1)) * unit;
}

/** Instance names become directory names: no '/', not '.' or '..'. */
export const InstanceName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
    "must be 1 to 63 characters of letters, digits, '_', '.' or '-', starting with a letter or digit",
  );

export const DhcpRange = z
  .object({
    start: Ipv4Address.describe("First address handed out dynamically (IPv4)."),
    end: Ipv4Address.describe("Last address handed out dynamically (IPv4); not before `start`."),
    leaseTime: LeaseTime.default("1h").describe(
      'Lease time in dnsmasq\'s notation: "1h", "30m", "3600" (seconds) or "infinite"; at least 2 minutes.',
    ),
  })
  .strict()
  .meta({ id: "DhcpRange", description: "The dynamic address pool of a DnsmasqInstance." });

export const StaticLease = z
  .object({
    mac: MacAddress.describe("The client's MAC address."),
    ip: Ipv4Address.describe("The IPv4 address it always gets."),
    hostname: Hostname.optional().describe(
      "Its host name (a DNS label), sent to the client and, with `dns`, resolvable.",
    ),
  })
  .strict()
  .meta({ id: "StaticLease", description: "A fixed address for one MAC." });

export type StaticLease = z.infer<typeof StaticLease>;

export const DnsmasqInstanceInputs = z
  .object({
    name: InstanceName.describe(
      "The instance's name (1-63 of letters, digits, '_', '.', '-'): names its files under /etc, /run and /var/lib.",
    ),
    interface: InterfaceName.describe(
      "The interface (usually a bridge) dnsmasq serves, and the only one it binds to; a change restarts dnsmasq.",
    ),
    subnet: Ipv4Network.optional().describe(
      'The IPv4 network served ("198.18.130.0/24"); when set, every address is checked against it at check time.',
    ),
    dhcpRange: DhcpRange.describe(
      "The dynamic address pool; a change restarts dnsmasq (leases are kept).",
    ),
    staticLeases: z
      .array(StaticLease)
      .default([])
      .describe("Fixed addresses by MAC, applied live (hosts file rewritten, SIGHUP, same pid)."),
    router: Ipv4Address.optional().describe(
      "The default gateway given to clients; unset: dnsmasq gives its own address on `interface`.",
    ),
    dnsServers: z
      .array(Ipv4Address)
      .default([])
      .describe(
        "DNS servers given to clients; empty: dnsmasq's own address when `dns` is on, none otherwise.",
      ),
    domain: DomainName.optional().describe(
      "The DNS domain given to clients (and served locally when `dns` is on).",
    ),
    dns: z.boolean().default(true).describe("Serve DNS on the interface; false sets `port=0`."),
    persistence: Persistence,
  })
  .strict()
  .superRefine((d, ctx) => {
    const { start, end } = d.dhcpRange;
    if (isIPv4(start) && isIPv4(end) && ipv4ToNumber(start) > ipv4ToNumber(end)) {
      ctx.addIssue({
        code: "custom",
        path: ["dhcpRange"],
        message: `start ${start} is after end ${end}`,
      });
    }
    duplicates(
      d.staticLeases.map((l) => l.mac),
      "mac",
      "MAC",
      ctx,
    );
    duplicates(
      d.staticLeases.map((l) => l.ip),
      "ip",
      "address",
      ctx,
    );
    // DNS names compare case-insensitively
    duplicates(
      d.staticLeases.map((l) => l.hostname?.toLowerCase()),
      "hostname",
      "hostname",
      ctx,
      d.staticLeases.map((l) => l.hostname),
    );
    d.dnsServers.forEach((s, i) => {
      if (d.dnsServers.indexOf(s) !== i) {
        ctx.addIssue({ code: "custom", path: ["dnsServers", i], message: `${s} is listed twice` });
      }
    });
    // Only well-formed values are compared: a malformed one already has its own issue.
    if (d.subnet === undefined || !Ipv4Network.safeParse(d.subnet).success) return;
    const subnet = d.subnet;
    const outside = (path: PropertyKey[], address: string): void => {
      const why = isIPv4(address) ? hostAddressProblem(address, subnet) : undefined;
      if (why) ctx.addIssue({ code: "custom", path, message: why });
    };
    outside(["dhcpRange", "start"], start);
    outside(["dhcpRange", "end"], end);
    d.staticLeases.forEach((l, i) => outside(["staticLeases", i, "ip"], l.ip));
    if (d.router !== undefined) outside(["router"], d.router);
  });

export type DnsmasqInstanceInputs = z.infer<typeof DnsmasqInstanceInputs>;

/** One line of dnsmasq's lease file. */
export const DnsmasqLease = z
  .object({
    expires: z
      .number()
      .int()
      .describe("Expiry in seconds since the epoch; 0 for an infinite lease."),
    mac: z.string().describe("The client's MAC address."),
    ip: z.string().describe("The leased IPv4 address."),
    hostname: z.string().optional().describe("The hostname the client sent, if any."),
  })
  .meta({ id: "DnsmasqLease", description: "One lease in dnsmasq's lease file." });
export type Lease = z.infer<typeof DnsmasqLease>;

/** What a DnsmasqInstance reports beyond its inputs. */
export const DnsmasqInstanceOutputs = z.object({
  pid: z.number().int().describe("The pid of the running dnsmasq."),
  configPath: z.string().describe("Where its config file is on the host."),
  leasesPath: z.string().describe("Where its lease file is on the host."),
  leases: z.array(DnsmasqLease).describe("The leases in the lease file when last observed."),
  persistedBy: PersistedBy,
  persistedDrift: z
    .string()
    .optional()
    .describe(
      "How the persisted layer (unit file, enablement, failed unit) differs from what the provider writes; absent when it matches.",
    ),
});

function duplicates(
  values: readonly (string | undefined)[],
  key: string,
  what: string,
  ctx: z.RefinementCtx,
  shown: readonly (string | undefined)[] = values,
): void {
  values.forEach((v, i) => {
    const first = values.indexOf(v);
    if (v !== undefined && first !== i) {
      ctx.addIssue({
        code: "custom",
        path: ["staticLeases", i, key],
        message: `${what} ${shown[i] ?? v} is already used by staticLeases[${first}]`,
      });
    }
  });
}

/** Where an instance keeps its files on the host (all owned by the provider). */
export interface DnsmasqPaths {
  configDir: string;
  runDir: string;
  dataDir: string;
  configPath: string;
  hostsPath: string;
  pidPath: string;
  leasesPath: string;
}

export const CONFIG_ROOT = "/etc/pulumi-hypervisor/dnsmasq";
export const RUN_ROOT = "/run/pulumi-hypervisor/dnsmasq";
export const DATA_ROOT = "/var/lib/pulumi-hypervisor/dnsmasq";

/** Returns the paths of the instance's config, hosts, pid and lease files. */
export function dnsmasqPaths(name: string): DnsmasqPaths {
  const configDir = `${CONFIG_ROOT}/${name}`;
  const runDir = `${RUN_ROOT}/${name}`;
  const dataDir = `${DATA_ROOT}/${name}`;
  return {
    configDir,
    runDir,
    dataDir,
    configPath: `${configDir}/dnsmasq.conf`,
    hostsPath: `${configDir}/dhcp-hosts`,
    pidPath: `${runDir}/dnsmasq.pid`,
    leasesPath: `${dataDir}/dnsmasq.leases`,
  };
}

/** A dnsmasq process running in the host's mount namespace. */
export interface DnsmasqProcess {
  pid: number;
  ppid: number;
  argv: string[];
}

/** The instance as observed, with what a plan needs of its surroundings. */
export interface DnsmasqState {
  name: string;
  paths: DnsmasqPaths;
  /** The pid of the daemon running this instance's config (from the pid file, verified in /proc). */
  pid: number | undefined;
  /** Daemons running this instance's config that the pid file does not name (to stop). */
  strays: number[];
  /** The config file's content, when present. */
  config: string | undefined;
  /** The hosts (static leases) file's content, when present. */
  hosts: string | undefined;
  /** Whether each of the instance's directories exists. */
  dirs: { config: boolean; run: boolean; data: boolean };
  leases: Lease[];
  /**
   * IPv4 addresses (CIDR) by interface: the probe reads the served interface's alone (every
   * interface's on a host without sysfs); one without any maps to [], one not there is absent.
   */
  interfaces: Record<string, string[]>;
  /** The interface of each other instance of this provider on the host, by instance name. */
  otherInstances: Record<string, string>;
  /** The persisted layer: whether PID 1 is systemd, the unit's enablement and state, its file. */
  persist: PersistedState;
  /** The MainPID systemd has for the unit (undefined without systemd or when it runs nothing). */
  mainPid: number | undefined;
  /** What observe was asked about: the unit's ordering and the persistence chosen. */
  wanted: { interface: string; persistence: Persistence } | undefined;
  /** Config, hosts or lease files others may read (written 0644 by older versions). */
  exposed?: string[];
}
