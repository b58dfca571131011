// A laptop on Wi-Fi with a Windows guest behind NAT. A bridge qbr0 with a static address,
// dnsmasq giving the guest a fixed address by MAC, NAT out of the Wi-Fi interface,
// `allow qbr0` for qemu-bridge-helper, and the guest with a virtio NIC on the bridge.
import * as pulumi from "@pulumi/pulumi";
import * as hypervisor from "pulumi-hypervisor";
import { hostConnection } from "../connection";

const cfg = new pulumi.Config();
const connection = hostConnection();
const wifi = cfg.get("wifiInterface") ?? "wlp2s0";
const guestMac = "52:54:00:12:34:56";

const bridge = new hypervisor.Bridge("qbr0", {
  connection,
  name: "qbr0",
  addresses: ["192.168.100.1/24"],
  allowQemuBridgeHelper: true,
});

const dhcp = new hypervisor.DnsmasqInstance("qbr0-dhcp", {
  connection,
  name: "qbr0",
  interface: bridge.name,
  subnet: "192.168.100.0/24",
  dhcpRange: { start: "192.168.100.100", end: "192.168.100.200", leaseTime: "12h" },
  staticLeases: [{ mac: guestMac, ip: "192.168.100.10", hostname: "windows" }],
  router: "192.168.100.1",
  dnsServers: ["192.168.100.1"],
});

const nat = new hypervisor.NatRule("qbr0-nat", {
  connection,
  name: "qbr0",
  sourceCidr: "192.168.100.0/24",
  outInterface: wifi,
  masquerade: true,
  forward: true,
  // RDP into the guest from the Wi-Fi side
  portForwards: [
    { protocol: "tcp", hostPort: 3389, destination: "192.168.100.10", destinationPort: 3389 },
  ],
});

const windows = new hypervisor.QemuGuest(
  "windows",
  {
    connection,
    name: "windows",
    memoryMiB: 8192,
    cpus: 4,
    accel: "kvm",
    disks: [
      { path: "/var/lib/pulumi-hypervisor/images/windows.qcow2", format: "qcow2", sizeGiB: 80 },
    ],
    ...(cfg.get("installIso") ? { cdrom: cfg.require("installIso"), bootOrder: "dc" } : {}),
    nics: [{ mac: guestMac, model: "virtio-net-pci", bridge: bridge.name }],
    display: "vnc=127.0.0.1:1",
  },
  { dependsOn: [dhcp, nat] },
);

export const guestAddress = dhcp.leases.apply(
  (ls) => (ls ?? []).find((l) => l.mac === guestMac)?.ip,
);
export const guestStatus = windows.status;
