export type { ConnectionArgs } from "./connection";
export { Bridge, type BridgeArgs } from "./bridge";
