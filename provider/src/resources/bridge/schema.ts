import { z } from "zod";
import { uniqueItems } from "../../host-output";
import { DEFAULT_DEADMAN_SECONDS } from "../../deadman/deadman";
import { Cidr, InterfaceName, MacAddress } from "../../net";
import type { RunningManagers } from "../../persist/keep-off";
import { PersistedDrift } from "../../persist/oneshot";
import { PersistedBy, Persistence, type PersistedState } from "../../persist/persistence";
import { NicManager, type ManagerState } from "./manager";

export const BridgeInputs = z
  .object({
    name: InterfaceName.describe("Interface name of the bridge."),
    addresses: z
      .array(Cidr)
      .default([])
      .superRefine(uniqueItems("address"))
      .describe(
        "Addresses with prefix length, IPv4 or IPv6, applied live; other addresses on the bridge are removed.",
      ),
    stp: z.boolean().default(false).describe("Spanning tree protocol on or off."),
    mtu: z
      .number()
      .int()
      .min(68, "must be at least 68")
      .max(65535, "must be at most 65535")
      .optional()
      .describe("MTU in bytes; unset leaves the kernel's choice alone."),
    macAddress: MacAddress.optional().describe(
      "The bridge's MAC address; unset leaves the kernel's choice alone (the lowest port MAC).",
    ),
    ports: z
      .array(InterfaceName)
      .default([])
      .superRefine(uniqueItems("port"))
      .describe(
        "Interfaces to enslave, attached live. The NIC carrying the SSH session needs its addresses in `addresses`.",
      ),
    vlanFiltering: z.boolean().default(false).describe("VLAN filtering on or off."),
    allowQemuBridgeHelper: z
      .boolean()
      .default(false)
      .describe(
        "Keep an `allow <name>` line in /etc/qemu/bridge.conf for qemu-bridge-helper (unprivileged QEMU).",
      ),
    nicManager: NicManager,
    rollbackSeconds: z
      .number()
      .int()
      .min(15, "must be at least 15")
      .max(3600, "must be at most 3600")
      .default(DEFAULT_DEADMAN_SECONDS)
      .describe(
        "How long the host waits for a new SSH login after a change of its management path (a port carrying the session or configured by the host's network manager) before it restores the previous configuration by itself.",
      ),
    persistence: Persistence,
    adopt: z
      .boolean()
      .default(false)
      .describe(
        "Take over an existing bridge of this name that the provider did not create (an admin's): create then changes it to match these inputs, and destroy deletes it. Without it, create refuses such a bridge and changes nothing.",
      ),
  })
  .strict()
  .superRefine((b, ctx) => {
    b.ports.forEach((p, i) => {
      if (p === b.name) {
        ctx.addIssue({
          code: "custom",
          path: ["ports", i],
          message: "a bridge cannot be its own port",
        });
      }
    });
  });

export type BridgeInputs = z.infer<typeof BridgeInputs>;

/** What a Bridge reports beyond its inputs. */
export const BridgeOutputs = z.object({
  macAddress: z.string().describe("The bridge's MAC address as observed."),
  ifIndex: z.number().int().describe("The kernel's interface index (stable across live updates)."),
  persistedBy: PersistedBy,
  persistedDrift: PersistedDrift,
});

/** A route as `ip -j route show` reports it, with every attribute moving it must keep. */
export interface Route {
  family: 4 | 6;
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
  metric?: number;
  /** `ip route` types other than unicast (blackhole, local, ...). */
  type?: string;
  table?: string;
  scope?: string;
  prefsrc?: string;
  /** Next-hop flags; `onlink` is the one that must move with the route. */
  flags?: string[];
}

/** One interface as `ip -d -j addr show` reports it. */
export interface Link {
  name: string;
  ifIndex: number;
  macAddress: string;
  mtu: number;
  up: boolean;
  kind: string | undefined;
  master: string | undefined;
  /** Global (non link-local) addresses with prefix, canonical. */
  addresses: string[];
  stp?: boolean;
  vlanFiltering?: boolean;
  /** The link's ifalias; the provider marks the bridges it creates (link-marker.ts). */
  ifalias?: string;
}

/** The bridge (if present) and the surroundings a plan needs. */
export interface BridgeState {
  name: string;
  bridge: Link | undefined;
  /** Interfaces whose master is this bridge. */
  ports: string[];
  /**
   * The interfaces a plan reads, by name: the bridge, its ports and the ports asked for (every
   * interface on a host without sysfs).
   */
  links: Record<string, Link>;
  /** Non-kernel routes in the main table (to move them with addresses). */
  routes: Route[];
  /** The interface the SSH session's replies leave by, when known. */
  sshInterface: string | undefined;
  /** The local address the SSH session uses, when known. */
  sshLocalAddress: string | undefined;
  /** The ports this bridge recorded as enslaved by it (others, such as taps, are left alone). */
  recordedPorts: string[];
  /** Those of them that were down and that the bridge brought up (brought down again when released). */
  raisedPorts: string[];
  /** The bridge's MAC was set explicitly; otherwise the kernel takes the lowest port MAC. */
  macPinned: boolean;
  /** The provider's own `allow <name>` pair is present in /etc/qemu/bridge.conf. */
  helperAllowed: boolean;
  /** The host's network managers and what the provider persisted through them. */
  managers: ManagerState;
  /** The host's network managers that run (NetworkManager is told to keep off a bridge of ours). */
  keepOff: RunningManagers;
  /** The bridge's unit, boot script and recorded MAC as the probe saw them. */
  persisted: PersistedState;
  /** The inputs the state was observed for (outputs describe the persisted layer's drift). */
  inputs?: BridgeInputs;
  /** Observed for a create: an existing bridge without the provider's marker is refused. */
  creating?: boolean;
}
