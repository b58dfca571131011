export type { ConnectionArgs } from "./connection";
export { Bridge, type BridgeArgs } from "./bridge";
export { DnsmasqInstance, type DnsmasqInstanceArgs } from "./dnsmasq-instance";
export { NatRule, type NatRuleArgs, type PortForwardArgs } from "./nat-rule";
export {
  QemuGuest,
  type QemuGuestArgs,
  type QemuGuestDiskArgs,
  type QemuGuestNicArgs,
} from "./qemu-guest";
export { TapDevice, type TapDeviceArgs } from "./tap-device";
export * as native from "./native";
