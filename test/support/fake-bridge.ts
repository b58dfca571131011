import { formatProbe } from "../../provider/src/host/probe";

/**
 * Returns what bridge-probe.sh prints on a host without systemd whose only bridge is br0 (absent
 * when `br0` is undefined), for fake hosts in unit tests.
 */
export function fakeBridgeProbe(br0: { mtu: number; ifalias?: string } | undefined): string {
  const links =
    br0 === undefined
      ? []
      : [
          {
            ifindex: 9,
            ifname: "br0",
            flags: ["UP"],
            mtu: br0.mtu,
            address: "aa:bb:cc:dd:ee:ff",
            ...(br0.ifalias !== undefined ? { ifalias: br0.ifalias } : {}),
            linkinfo: { info_kind: "bridge", info_data: { stp_state: 0, vlan_filtering: 0 } },
            addr_info: [],
          },
        ];
  return formatProbe([
    ["links", `${JSON.stringify(links)}\n[]`],
    ["bridge-conf", ""],
    ["ports", ""],
    ["addr-assign-type", "3"],
    ["systemd", "no"],
  ]);
}
