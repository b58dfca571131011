// The classes of the native package (`hypervisor:index:<Name>`, served by pulumi-resource-hypervisor).
export { Provider, type ProviderArgs } from "./provider";
export { Bridge, type BridgeArgs } from "./bridge";
export { DnsmasqInstance, type DnsmasqInstanceArgs } from "./dnsmasq-instance";
export { NatRule, type NatRuleArgs } from "./nat-rule";
export { QemuGuest, type QemuGuestArgs } from "./qemu-guest";
export { TapDevice, type TapDeviceArgs } from "./tap-device";
