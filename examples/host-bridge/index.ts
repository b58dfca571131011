// A host bridge taking over the NIC: instead of libvirt's NAT network, a host bridge br0 that
// enslaves the physical NIC eno1 so guests get addresses on the LAN. The host's address moves from
// eno1 to br0 in the same step (the provider refuses to enslave the NIC carrying its SSH session
// otherwise), so the session survives.
import * as pulumi from "@pulumi/pulumi";
import * as hypervisor from "pulumi-hypervisor";
import { hostConnection } from "../connection";

const cfg = new pulumi.Config();
const connection = hostConnection();

const br0 = new hypervisor.Bridge("br0", {
  connection,
  name: "br0",
  ports: [cfg.get("nic") ?? "eno1"],
  // the NIC's current address: it moves onto the bridge together with its routes
  addresses: [cfg.require("hostCidr")],
  stp: false,
  allowQemuBridgeHelper: true,
});

export const bridgeMac = br0.macAddress;
