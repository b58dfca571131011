import { formWhenPersisted, oneshotPersistence } from "../../persist/oneshot";
import type { ResourceModule } from "../../resource";
import {
  IP_FORWARD,
  observeTapDevice,
  parseTapDeviceResult,
  probeTapDevice,
  proxyArpKey,
} from "./observe";
import {
  claimedKeys,
  managedRoutes,
  planTapDevice,
  planTapDeviceLive,
  tapPersistedForm,
} from "./plan";
import { TapDeviceInputs, TapDeviceOutputs, type TapDeviceState, type TapRouted } from "./schema";

const persistence = oneshotPersistence<TapDeviceInputs, TapDeviceState>(
  formWhenPersisted(tapPersistedForm),
  planTapDeviceLive,
);

/** Returns the account as the program wrote it when the tap has that id, else the id seen. */
function observedAccount(
  seen: number | undefined,
  desired: string | null,
  resolved: number | null | undefined,
): string | null {
  if (seen === undefined) return null;
  if (desired !== null && (desired === String(seen) || resolved === seen)) return desired;
  return String(seen);
}

/** Returns `routed` as observed: the managed host routes and the uplink whose proxy ARP this tap holds. */
function observedRouted(state: TapDeviceState, desired: TapDeviceInputs): TapRouted | null {
  const seen = managedRoutes(state).map((r) => r.address);
  const order = desired.routed?.addresses ?? [];
  const addresses = [
    ...order.filter((a) => seen.includes(a)),
    ...seen.filter((a) => !order.includes(a)).sort(),
  ];
  const on = (k: string): boolean => state.sysctls[k]?.value === "1";
  const uplinks = claimedKeys(state)
    .map((k) => /^net\/ipv4\/conf\/(.+)\/proxy_arp$/.exec(k)?.[1])
    .filter((u): u is string => u !== undefined && on(proxyArpKey(u)));
  const want = desired.routed?.proxyArpInterface;
  const uplink = want !== undefined && uplinks.includes(want) ? want : uplinks[0];
  const proxying = uplink !== undefined && on(IP_FORWARD) && on(proxyArpKey(state.name));
  if (desired.routed === null && addresses.length === 0 && !proxying) return null;
  return { addresses, ...(proxying ? { proxyArpInterface: uplink } : {}) };
}

/** The TapDevice resource. */
export const tapDeviceModule: ResourceModule<
  TapDeviceInputs,
  TapDeviceState,
  typeof TapDeviceOutputs
> = {
  type: "TapDevice",
  description:
    "A persistent tap device on a hypervisor host, attached to a bridge or routed (host routes and proxy ARP).",
  noun: "tap device",
  inputs: TapDeviceInputs,
  inputKeys: Object.keys(TapDeviceInputs.shape),
  // owner/group and multi_queue can only be set when the tap is created (see plan.ts).
  identity: ["name", "multiQueue", "vnetHdr", "owner", "group"],
  id: (inputs) => inputs.name,
  link: (inputs) => inputs.name,
  needsClientAddress: true,
  probe: probeTapDevice,
  parse: parseTapDeviceResult,
  observe: (host, inputs, ctx) => observeTapDevice(host, inputs, ctx),
  exists: (state) => state.tap !== undefined,
  outputSchema: TapDeviceOutputs,
  plan: planTapDevice,
  outputs: (state) => ({
    macAddress: state.tap?.macAddress,
    ...persistence.outputs(state),
  }),
  observedInputs: (state, desired) => ({
    name: state.name,
    bridge: state.tap?.master ?? null,
    routed: observedRouted(state, desired),
    owner: observedAccount(state.ownerId, desired.owner, state.resolvedUid),
    group: observedAccount(state.groupId, desired.group, state.resolvedGid),
    multiQueue: state.tap?.multiQueue ?? false,
    // Not observed: whoever attaches last decides IFF_VNET_HDR (see plan.ts).
    vnetHdr: desired.vnetHdr,
    mtu: state.tap?.mtu,
    persistence: persistence.observed(desired, state),
    // An opt-in for the create, not a property of the tap: never drift.
    adopt: desired.adopt,
  }),
};
