// The built-in lab's program: the same guest network stamped onto every lab host.
// `npm run lab` starts the lab hosts, writes their connection details to the hosts file and applies
// this program (with `pulumi up` when the Pulumi CLI is installed, otherwise through the
// engine-protocol driver).
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as hypervisor from "pulumi-hypervisor";

interface LabHostEntry {
  name: string;
  index: number;
  connection: hypervisor.ConnectionArgs;
}

const hostsFile =
  process.env["HYPERVISOR_LAB_HOSTS"] ?? path.join(__dirname, "..", "..", ".lab", "hosts.json");
const hosts = JSON.parse(readFileSync(hostsFile, "utf8")) as LabHostEntry[];

export const bridges = hosts.map((h) => {
  const br = new hypervisor.Bridge(`${h.name}-br-guests`, {
    connection: h.connection,
    name: "br-guests",
    // Each host's guest subnet: 198.18.(100 + index).0/24, plus a documentation IPv6 prefix.
    addresses: [`198.18.${100 + h.index}.1/24`, `2001:db8:${100 + h.index}::1/64`],
    stp: false,
    mtu: 1500,
    allowQemuBridgeHelper: true,
  });
  return { host: h.name, name: br.name, macAddress: br.macAddress, ifIndex: br.ifIndex };
});
