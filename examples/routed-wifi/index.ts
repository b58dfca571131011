// Routed taps with proxy ARP, for Wi-Fi that cannot be bridged. A routed tap per guest (no address
// on the tap), a host route /32 to the guest's LAN address via the tap, proxy ARP on the tap and on
// the Wi-Fi interface, and IPv4 forwarding; the guest uses the host's Wi-Fi address as its gateway.
import * as pulumi from "@pulumi/pulumi";
import * as hypervisor from "pulumi-hypervisor";
import { hostConnection } from "../connection";

const cfg = new pulumi.Config();
const connection = hostConnection();
const wifi = cfg.get("wifiInterface") ?? "wlp2s0";
const guestIp = cfg.get("guestAddress") ?? "192.168.1.50";

const tap = new hypervisor.TapDevice("tap-routed", {
  connection,
  name: "tapr0",
  routed: { addresses: [guestIp], proxyArpInterface: wifi },
});

export const status = new hypervisor.QemuGuest("routed-guest", {
  connection,
  name: "routed-guest",
  memoryMiB: 1024,
  disks: [
    { path: "/var/lib/pulumi-hypervisor/images/routed-guest.qcow2", format: "qcow2", sizeGiB: 10 },
  ],
  nics: [{ mac: "52:54:00:00:05:01", model: "virtio-net-pci", tap: tap.name }],
}).status;
