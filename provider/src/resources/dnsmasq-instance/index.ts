import { describePersistDrift } from "../../persist/persistence";
import type { ResourceModule } from "../../resource";
import { observeDnsmasq, parseDnsmasqResult, probeDnsmasq } from "./observe";
import { planDnsmasqInstance } from "./plan";
import { parseDhcpHosts, parseDnsmasqConf } from "./render";
import { DnsmasqInstanceInputs, DnsmasqInstanceOutputs, type DnsmasqState } from "./schema";
import { wantedForm } from "./unit";

function driftOf(state: DnsmasqState): string | undefined {
  const form = wantedForm(state);
  return form === undefined ? undefined : describePersistDrift(form, state.persist);
}

/** The DnsmasqInstance resource. */
export const dnsmasqInstanceModule: ResourceModule<
  DnsmasqInstanceInputs,
  DnsmasqState,
  typeof DnsmasqInstanceOutputs
> = {
  type: "DnsmasqInstance",
  description: "A dnsmasq serving DHCP (and optionally DNS) on one interface of a hypervisor host.",
  noun: "dnsmasq instance",
  inputs: DnsmasqInstanceInputs,
  inputKeys: Object.keys(DnsmasqInstanceInputs.shape),
  identity: ["name"],
  id: (inputs) => inputs.name,
  lockKeys: (inputs) => [`interface.${inputs.interface}`],
  probe: probeDnsmasq,
  parse: parseDnsmasqResult,
  observe: (host, inputs, ctx) => observeDnsmasq(host, inputs, ctx),
  // The instance is its running daemon: a dead one reads as gone, and the next up starts it again
  // from the files that are still there (lease file included).
  exists: (state) => state.pid !== undefined,
  outputSchema: DnsmasqInstanceOutputs,
  plan: planDnsmasqInstance,
  outputs: (state) => ({
    pid: state.pid,
    configPath: state.paths.configPath,
    leasesPath: state.paths.leasesPath,
    leases: state.leases,
    persistedBy: wantedForm(state) !== undefined ? "systemd" : "none",
    persistedDrift: driftOf(state),
  }),
  observedInputs: (state, desired) => {
    const conf = state.config === undefined ? {} : parseDnsmasqConf(state.config);
    return {
      name: state.name,
      interface: conf.interface ?? desired.interface,
      subnet: conf.subnet,
      dhcpRange: conf.dhcpRange ?? desired.dhcpRange,
      staticLeases: state.hosts === undefined ? [] : parseDhcpHosts(state.hosts),
      router: conf.router,
      dnsServers: conf.dnsServers ?? [],
      domain: conf.domain,
      dns: conf.dns ?? true,
      // A drifted persisted layer (unit edited, disabled, failed) would not bring the instance back
      // as declared: refresh shows it as drift of `persistence`, so `up` repairs it.
      persistence: driftOf(state) !== undefined ? "none" : desired.persistence,
    };
  },
};
