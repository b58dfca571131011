// Unprivileged QEMU with qemu-bridge-helper (qemu:///session). virbr0 with dnsmasq DHCP, forwarding
// and NAT, `allow virbr0` in /etc/qemu/bridge.conf, the setuid qemu-bridge-helper, and a guest run
// by a normal user that joins the bridge through the helper.
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as hypervisor from "pulumi-hypervisor";
import { hostConnection } from "../connection";

const cfg = new pulumi.Config();
const connection = hostConnection();
const user = cfg.get("guestUser") ?? "alice";

const virbr0 = new hypervisor.Bridge("virbr0", {
  connection,
  name: "virbr0",
  addresses: ["192.168.122.1/24"],
  allowQemuBridgeHelper: true,
});

const dhcp = new hypervisor.DnsmasqInstance("virbr0-dhcp", {
  connection,
  name: "virbr0",
  interface: virbr0.name,
  dhcpRange: { start: "192.168.122.2", end: "192.168.122.254", leaseTime: "1h" },
  router: "192.168.122.1",
});

const nat = new hypervisor.NatRule("virbr0-nat", {
  connection,
  name: "virbr0",
  sourceCidr: "192.168.122.0/24",
  outInterface: cfg.get("uplink") ?? "eth0",
  masquerade: true,
  forward: true,
});

// A one-off host step with @pulumi/command: the same connection object serves both packages.
const helper = new command.remote.Command("bridge-helper-setuid", {
  connection,
  create: "chmod u+s /usr/lib/qemu/qemu-bridge-helper",
  delete: "chmod u-s /usr/lib/qemu/qemu-bridge-helper",
});

export const guest = new hypervisor.QemuGuest(
  "session-guest",
  {
    connection,
    name: "session-guest",
    memoryMiB: 2048,
    runAs: user,
    disks: [{ path: `/home/${user}/vms/session-guest.qcow2`, format: "qcow2", sizeGiB: 20 }],
    nics: [{ mac: "52:54:00:00:03:01", bridge: virbr0.name }],
  },
  { dependsOn: [dhcp, nat, helper] },
).status;
