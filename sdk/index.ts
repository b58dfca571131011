export type { ConnectionArgs } from "./connection";
export { Bridge, type BridgeArgs } from "./bridge";
export { TapDevice, type TapDeviceArgs } from "./tap-device";
