// The fleet of index.ts through the native plugin (pulumi-resource-hypervisor): each host gets its
// own `Provider` holding its connection, and every resource of that host names the provider
// instead of repeating the connection. A changed host entry then touches only its provider's
// resources, and a rotated key is a provider update, not a change of every resource.
// Run it with `main: native.ts` in Pulumi.yaml and the plugin installed (plugins.providers).
import * as hypervisor from "pulumi-hypervisor";
import { loadFleet, stampGuestNetwork } from "./network";

const { hosts, settings } = loadFleet(__dirname);

export const fleet = hosts.map((h, k) => {
  const provider = new hypervisor.native.Provider(`hv-${h.name}`, { connection: h.connection });
  return stampGuestNetwork(hypervisor.native, settings, h, k, { args: {}, opts: { provider } });
});
