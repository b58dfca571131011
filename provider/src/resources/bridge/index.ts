import type { ResourceModule } from "../../resource";
import { oneshotPersistence } from "../../persist/oneshot";
import { observeBridge, parseBridgeResult, probeBridge } from "./observe";
import { bridgePersistedForm, persistsOwnUnit, planBridge, planBridgeLive } from "./plan";
import { BridgeInputs, BridgeOutputs, type BridgeState } from "./schema";

const persistence = oneshotPersistence(
  (inputs: BridgeInputs, state: BridgeState) =>
    persistsOwnUnit(inputs, state) ? bridgePersistedForm(inputs, state) : undefined,
  planBridgeLive,
);

/** The Bridge resource. */
export const bridgeModule: ResourceModule<BridgeInputs, BridgeState, typeof BridgeOutputs> = {
  type: "Bridge",
  description:
    "A Linux bridge on a hypervisor host, with its addresses, ports and an optional qemu-bridge-helper ACL.",
  noun: "bridge",
  inputs: BridgeInputs,
  inputKeys: Object.keys(BridgeInputs.shape),
  identity: ["name"],
  id: (inputs) => inputs.name,
  link: (inputs) => inputs.name,
  needsClientAddress: true,
  probe: probeBridge,
  parse: parseBridgeResult,
  observe: (host, inputs, ctx) => observeBridge(host, inputs, ctx),
  exists: (state) => state.bridge !== undefined,
  outputSchema: BridgeOutputs,
  plan: planBridge,
  outputs: (state) => ({
    macAddress: state.bridge?.macAddress,
    ifIndex: state.bridge?.ifIndex,
    ...(state.inputs !== undefined && state.inputs.ports.length > 0 && state.managers.backup
      ? // A bridge that took over a NIC of the host's network manager persists through it.
        { persistedBy: state.managers.backup.manager, persistedDrift: undefined }
      : persistence.outputs(state)),
  }),
  observedInputs: (state, desired) => ({
    name: state.name,
    addresses: state.bridge?.addresses ?? [],
    stp: state.bridge?.stp ?? false,
    mtu: state.bridge?.mtu,
    macAddress: state.bridge?.macAddress,
    ports: state.ports.filter((p) => state.recordedPorts.includes(p) || desired.ports.includes(p)),
    vlanFiltering: state.bridge?.vlanFiltering ?? false,
    allowQemuBridgeHelper: state.helperAllowed,
    persistence: persistence.observed(desired, state),
    // An opt-in for the create, not a property of the bridge: never drift.
    adopt: desired.adopt,
  }),
};
