// A fleet: the same guest network stamped onto every host listed in a hosts file. Each host gets
// a bridge with the gateway address, dnsmasq on it with that host's own slice of the lease range
// (so guests that move between hosts never collide on a dynamic address), NAT out of the host's
// uplink, a tap for the guest, and one QEMU guest whose fixed address comes from a static lease.
// Every resource carries its host's `connection` (the dynamic classes); native.ts is the same
// fleet with one native provider per host. The hosts file and config are described in network.ts.
import * as hypervisor from "pulumi-hypervisor";
import { loadFleet, stampGuestNetwork } from "./network";

const { hosts, settings } = loadFleet(__dirname);

export const fleet = hosts.map((h, k) =>
  stampGuestNetwork(hypervisor, settings, h, k, { args: { connection: h.connection } }),
);
