import type { ResourceModule } from "./resource";
import { bridgeModule } from "./resources/bridge";
import { dnsmasqInstanceModule } from "./resources/dnsmasq-instance";
import { natRuleModule } from "./resources/nat-rule";
import { qemuGuestModule } from "./resources/qemu-guest";
import { tapDeviceModule } from "./resources/tap-device";

/** One table from type name to resource module; the SDK, dynamic entry and schema read it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const resourceModules: Record<string, ResourceModule<any, any>> = {
  Bridge: bridgeModule,
  DnsmasqInstance: dnsmasqInstanceModule,
  NatRule: natRuleModule,
  QemuGuest: qemuGuestModule,
  TapDevice: tapDeviceModule,
};
