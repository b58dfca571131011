// Two guests on a private bridge with taps. Two taps on br0, each guest with a user-mode NIC would
// be QEMU's default; here each gets a tap NIC with an explicit, distinct MAC (QEMU's default MACs
// collide) and a static address set inside the guest (192.168.50.11 and .12).
import * as hypervisor from "pulumi-hypervisor";
import { hostConnection } from "../connection";

const connection = hostConnection();

const br0 = new hypervisor.Bridge("br0", { connection, name: "br0" });

export const guests = [1, 2].map((i) => {
  const tap = new hypervisor.TapDevice(`tap${i - 1}`, {
    connection,
    name: `tap${i - 1}`,
    bridge: br0.name,
  });
  const vm = new hypervisor.QemuGuest(`guest${i}`, {
    connection,
    name: `guest${i}`,
    memoryMiB: 1024,
    disks: [
      { path: `/var/lib/pulumi-hypervisor/images/guest${i}.qcow2`, format: "qcow2", sizeGiB: 10 },
    ],
    nics: [{ mac: `52:54:00:00:04:0${i}`, model: "virtio-net-pci", tap: tap.name }],
  });
  return { tap: tap.name, status: vm.status };
});
