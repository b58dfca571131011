import { z } from "zod";
import type { SysctlObservation } from "../../sysctl";
import { uniqueItems } from "../../host-output";
import { canonicalHostAddress, InterfaceName } from "../../net";
import type { RunningManagers } from "../../persist/keep-off";
import { PersistedDrift } from "../../persist/oneshot";
import { PersistedBy, Persistence, type PersistedState } from "../../persist/persistence";

/** A guest address for a host route: "198.18.120.5", "198.18.120.5/32", "2001:db8::5/128". */
const HostAddress = z.string().transform((s, ctx) => {
  const a = canonicalHostAddress(s);
  if (a === undefined) {
    ctx.addIssue({
      code: "custom",
      message:
        /^[^/\s]+\/\d{1,3}$/.test(s) && canonicalHostAddress(s.split("/")[0] ?? "")
          ? `${JSON.stringify(s)} is not a single address (each guest address gets a /32 or /128 host route)`
          : `${JSON.stringify(s)} is not an IP address`,
    });
    return z.NEVER;
  }
  return a;
});

// Names as useradd/groupadd accept them; digits only means a numeric id. The uid/gid (u32)
// 4294967295 is -1, which the kernel reads as "no owner".
const ACCOUNT_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;
const Account = (what: "user" | "group") =>
  z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const s = typeof v === "number" ? String(v) : v;
      if (/^\d{1,10}$/.test(s) && Number(s) < 4294967295) return String(Number(s));
      if (typeof v === "string" && ACCOUNT_RE.test(s)) return s;
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(v)} is not a ${what} name or a numeric id (0 to 4294967294)`,
      });
      return z.NEVER;
    })
    .nullable()
    .default(null);

export const TapRouted = z
  .object({
    addresses: z
      .array(HostAddress)
      .default([])
      .superRefine(uniqueItems("address"))
      .describe(
        "Guest addresses (IPv4 or IPv6, optionally with /32 or /128); each gets a host route via the tap.",
      ),
    proxyArpInterface: InterfaceName.optional().describe(
      "The uplink (e.g. Wi-Fi) on which to answer ARP for the guests: proxy ARP on it and on the tap, and IPv4 forwarding.",
    ),
  })
  .strict()
  .meta({ id: "TapRouted", description: "Host routes and proxy ARP for a routed tap." });
export type TapRouted = z.infer<typeof TapRouted>;

export const TapDeviceInputs = z
  .object({
    name: InterfaceName.describe("Interface name of the tap."),
    bridge: InterfaceName.nullable()
      .default(null)
      .describe(
        "The bridge to attach the tap to, re-attached live on change; unset: not attached. Excludes `routed`.",
      ),
    routed: TapRouted.nullable()
      .default(null)
      .describe(
        "Host routes and proxy ARP instead of a bridge (for uplinks that cannot be bridged); unset: none. Excludes `bridge`.",
      ),
    owner: Account("user").describe(
      "User (name or uid) allowed to open the tap without CAP_NET_ADMIN (for an unprivileged QEMU); unset: none.",
    ),
    group: Account("group").describe(
      "Group (name or gid) allowed to open the tap without CAP_NET_ADMIN; unset: none.",
    ),
    multiQueue: z.boolean().default(false).describe("Create the tap with IFF_MULTI_QUEUE."),
    vnetHdr: z.boolean().default(false).describe("Create the tap with IFF_VNET_HDR."),
    mtu: z
      .number()
      .int("must be a whole number")
      .min(68, "must be at least 68")
      .max(65521, "must be at most 65521 (the largest a tap accepts)")
      .optional()
      .describe("MTU in bytes; unset leaves the kernel's choice alone."),
    persistence: Persistence,
    adopt: z
      .boolean()
      .default(false)
      .describe(
        "Take over an existing tap of this name that the provider did not create (an admin's): create then changes it to match these inputs, and destroy deletes it. Without it, create refuses such a tap and changes nothing.",
      ),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.bridge !== null && t.routed !== null) {
      ctx.addIssue({
        code: "custom",
        path: ["routed"],
        message:
          "bridge and routed are mutually exclusive: a tap is either a bridge port or routed with host routes; set one of them",
      });
    }
    if (t.bridge !== null && t.bridge === t.name) {
      ctx.addIssue({
        code: "custom",
        path: ["bridge"],
        message: "a tap cannot be attached to itself",
      });
    }
    if (t.routed?.proxyArpInterface !== undefined && t.routed.proxyArpInterface === t.name) {
      ctx.addIssue({
        code: "custom",
        path: ["routed", "proxyArpInterface"],
        message: "must name the uplink (e.g. the Wi-Fi interface), not the tap itself",
      });
    }
  });

export type TapDeviceInputs = z.infer<typeof TapDeviceInputs>;

/** What a TapDevice reports beyond its inputs. */
export const TapDeviceOutputs = z.object({
  macAddress: z
    .string()
    .describe("The tap's MAC address as observed (the host side; the guest NIC has its own)."),
  persistedBy: PersistedBy,
  persistedDrift: PersistedDrift,
});

/** One interface as `ip -d -j link show` reports it, with the tun details when it is one. */
export interface TapLink {
  name: string;
  ifIndex: number;
  macAddress: string;
  mtu: number;
  up: boolean;
  kind: string | undefined;
  master: string | undefined;
  /** "tap" or "tun" for a tun device. */
  tunType?: string;
  multiQueue?: boolean;
  vnetHdr?: boolean;
  persist?: boolean;
  /** The link's ifalias; the provider marks the taps it creates (link-marker.ts). */
  ifalias?: string;
}

/** A host route (/32 or /128) in the main table, as `ip -j route show` reports it. */
export interface HostRoute {
  family: 4 | 6;
  /** The address without prefix, as `ip` prints it. */
  address: string;
  dev: string | undefined;
  protocol: string | undefined;
  /** "unicast" unless `ip` says otherwise (blackhole, unreachable, ...). */
  type: string;
}

/** A process with the tap open (from `/proc/<pid>/fdinfo`, `iff:` line). */
export interface TapHolder {
  pid: number;
  command: string;
}

/** The tap (if present) and the surroundings a plan needs. */
export interface TapDeviceState {
  name: string;
  /** The interface, when it exists and is a tap. */
  tap: TapLink | undefined;
  /** The links a plan looks at by name: the tap (or another link of its name), its bridge, its uplink. */
  links: Record<string, TapLink>;
  /** Every host route in the main table (to find ours and clashes). */
  hostRoutes: HostRoute[];
  /** Values of the probed sysctls and whether this tap's owner holds a claim on each. */
  sysctls: Record<string, SysctlObservation>;
  /** The tap's owner and group from sysfs; undefined when unset (-1) or absent. */
  ownerId: number | undefined;
  groupId: number | undefined;
  /** The desired owner/group names resolved on the host: null when unknown there, undefined when not asked. */
  resolvedUid: number | null | undefined;
  resolvedGid: number | null | undefined;
  /**
   * Processes in the host's network namespace that hold the tap open; undefined when a look-only
   * probe skipped the scan (such a state is never planned from for applying).
   */
  holders: TapHolder[] | undefined;
  /** The tap's unit and boot script as the probe saw them. */
  persisted: PersistedState;
  /** The desired bridge has a unit of the provider's (the tap's unit then orders after it). */
  bridgeUnit: boolean;
  /** The host's network managers that run (told to keep off the tap). */
  keepOff: RunningManagers;
  /** The inputs the state was observed for (outputs describe the persisted layer's drift). */
  inputs?: TapDeviceInputs;
  /** The address this SSH session comes from, canonical, when known. */
  sshClientAddress?: string;
  /** Observed for a create: an existing tap without the provider's marker is refused. */
  creating?: boolean;
}
