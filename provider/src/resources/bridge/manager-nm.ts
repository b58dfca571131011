import type { Step } from "../../step";
import type { ManagedBridge } from "./manager";

/** What NetworkManager needs to bring the bridge and its NICs back. */
export interface NmBridge extends Omit<ManagedBridge, "routes"> {
  /** The default gateways that moved with the NIC, by family. */
  readonly gateway4: string | undefined;
  readonly gateway6: string | undefined;
}

/** Returns the profile name the provider gives the bridge (and `<bridge>-<nic>` each port). */
export function nmProfile(bridge: string, nic?: string): string {
  return `pulumi-hypervisor-${bridge}${nic !== undefined ? `-${nic}` : ""}`;
}

/**
 * Returns the steps that add the bridge profile and one bridge-slave profile per NIC, and
 * activate them: NetworkManager then owns them as it owned the NIC's own profile, which stays
 * untouched (activating the slave profile takes the device from it).
 */
export function planNmBridge(b: NmBridge): Step[] {
  const v4 = b.addresses.filter((a) => !a.includes(":"));
  const v6 = b.addresses.filter((a) => a.includes(":"));
  const ip = (fam: "ipv4" | "ipv6", addrs: string[], gw: string | undefined): string[] =>
    addrs.length > 0
      ? [
          `${fam}.method`,
          "manual",
          `${fam}.addresses`,
          addrs.join(","),
          ...(gw ? [`${fam}.gateway`, gw] : []),
        ]
      : [`${fam}.method`, "disabled"];
  return [
    {
      summary: `add NetworkManager profile ${nmProfile(b.bridge)} for bridge ${b.bridge}`,
      argv: [
        "nmcli",
        "connection",
        "add",
        "type",
        "bridge",
        "con-name",
        nmProfile(b.bridge),
        "ifname",
        b.bridge,
        "bridge.stp",
        b.stp ? "yes" : "no",
        ...(b.macAddress !== undefined ? ["bridge.mac-address", b.macAddress] : []),
        ...(b.mtu !== undefined ? ["ethernet.mtu", String(b.mtu)] : []),
        ...ip("ipv4", v4, b.gateway4),
        ...ip("ipv6", v6, b.gateway6),
      ],
    },
    ...b.nics.map((nic): Step => ({
      summary: `add NetworkManager profile ${nmProfile(b.bridge, nic)}: ${nic} as a port of ${b.bridge}`,
      argv: [
        "nmcli",
        "connection",
        "add",
        "type",
        "bridge-slave",
        "con-name",
        nmProfile(b.bridge, nic),
        "ifname",
        nic,
        "master",
        b.bridge,
      ],
    })),
    {
      summary: `activate ${nmProfile(b.bridge)}`,
      argv: ["nmcli", "connection", "up", nmProfile(b.bridge)],
    },
    ...b.nics.map((nic): Step => ({
      summary: `activate ${nmProfile(b.bridge, nic)}`,
      argv: ["nmcli", "connection", "up", nmProfile(b.bridge, nic)],
    })),
  ];
}

/** Returns the steps that delete the provider's profiles and give each NIC its own back. */
export function planNmUnbridge(bridge: string, nics: readonly string[]): Step[] {
  return [
    {
      summary: `delete NetworkManager profiles ${[bridge, ...nics.map((n) => `${bridge}-${n}`)].map((n) => `pulumi-hypervisor-${n}`).join(", ")}`,
      argv: [
        "nmcli",
        "connection",
        "delete",
        nmProfile(bridge),
        ...nics.map((n) => nmProfile(bridge, n)),
      ],
    },
    ...nics.map((nic): Step => ({
      summary: `let NetworkManager bring ${nic}'s own profile back up`,
      argv: ["nmcli", "device", "connect", nic],
    })),
  ];
}
