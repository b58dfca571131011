// The bench's job as plain data, per host: what every tool (the provider, Ansible, the floor
// script) must build, and the files the provider renders for it, so the peers write the same ones.
import {
  dnsmasqPaths,
  DnsmasqInstanceInputs,
} from "../provider/src/resources/dnsmasq-instance/schema";
import { renderDnsmasqConf } from "../provider/src/resources/dnsmasq-instance/render";
import { NatRuleInputs } from "../provider/src/resources/nat-rule/schema";
import { nftTableName, rulesFor } from "../provider/src/resources/nat-rule/rules";
import { renderNftRuleset } from "../provider/src/resources/nat-rule/nftables";
import { fleetShape } from "./fleet-specs";

export interface HostJob {
  bridges: Array<{ name: string; address: string }>;
  taps: Array<{ name: string; bridge: string }>;
  dnsmasq?: {
    name: string;
    interface: string;
    subnet: string;
    start: string;
    end: string;
    router: string;
  };
  nat?: { name: string; sourceCidr: string; outInterface: string };
}

/** Returns one host's job: its guest network `net` holds bridge b's /26 at 64*b. */
export function hostJob(net: string, resources: number): HostJob {
  const shape = fleetShape(resources);
  const job: HostJob = { bridges: [], taps: [] };
  for (let b = 0; b < shape.bridges; b++) {
    job.bridges.push({ name: `bbr${b}`, address: `${net}.${64 * b + 1}/26` });
  }
  for (let t = 0; t < shape.taps; t++) {
    job.taps.push({ name: `btap${t}`, bridge: `bbr${t % shape.bridges}` });
  }
  if (shape.dnsmasq) {
    job.dnsmasq = {
      name: "bbr0",
      interface: "bbr0",
      subnet: `${net}.0/26`,
      start: `${net}.10`,
      end: `${net}.50`,
      router: `${net}.1`,
    };
  }
  if (shape.nat) job.nat = { name: "bench", sourceCidr: `${net}.0/24`, outInterface: "wan0" };
  return job;
}

/** The files and names the provider uses for a job's dnsmasq and NAT, rendered by its own code. */
export interface JobFiles {
  dnsmasq?: { conf: string; configPath: string; hostsPath: string; dirs: string[] };
  nat?: { table: string; ruleset: string };
}

/** Returns what the provider would write for the job's dnsmasq and NAT rule. */
export function jobFiles(job: HostJob): JobFiles {
  const out: JobFiles = {};
  if (job.dnsmasq) {
    const d = job.dnsmasq;
    const inputs = DnsmasqInstanceInputs.parse({
      name: d.name,
      interface: d.interface,
      subnet: d.subnet,
      dhcpRange: { start: d.start, end: d.end },
      router: d.router,
    });
    const p = dnsmasqPaths(d.name);
    out.dnsmasq = {
      conf: renderDnsmasqConf(inputs),
      configPath: p.configPath,
      hostsPath: p.hostsPath,
      dirs: [p.configDir, p.runDir, p.dataDir],
    };
  }
  if (job.nat) {
    const n = job.nat;
    const inputs = NatRuleInputs.parse({
      name: n.name,
      sourceCidr: n.sourceCidr,
      outInterface: n.outInterface,
      masquerade: true,
      forward: true,
    });
    out.nat = { table: nftTableName(n.name), ruleset: renderNftRuleset(n.name, rulesFor(inputs)) };
  }
  return out;
}
