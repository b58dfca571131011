import { basename } from "node:path";
import { z } from "zod";
import type { Host, RunResult } from "../../host/host";
import { parseProbe } from "../../host/probe";
import { parsePersistProbe, probeUnits, warnNoSystemd } from "../../persist/persistence";
import { unitPath } from "../../persist/systemd-unit";
import { declareRunsInShell, scriptIn, type ScriptCall } from "../../host/script";
import { observeWith, type ObserveContext, type ProbeCall } from "../../resource";
import { parseLeases } from "./render";
import { dnsmasqUnitName } from "./unit";
import {
  CONFIG_ROOT,
  dnsmasqPaths,
  type DnsmasqPaths,
  type DnsmasqProcess,
  type DnsmasqInstanceInputs,
  type DnsmasqState,
} from "./schema";

// Reviewed against declareRunsInShell's contract.
declareRunsInShell("dnsmasq-probe.sh");

/**
 * Returns the call of the single observe probe for an instance (dnsmasq-probe.sh), which reads the
 * addresses of `iface` alone: the interface the instance serves, the only one its plan looks at.
 */
export function observeCall(
  paths: DnsmasqPaths,
  iface: string,
  unit: string = dnsmasqUnitName(basename(paths.configDir)),
): ScriptCall {
  return scriptIn(__dirname, "dnsmasq-probe.sh", [
    paths.configPath,
    paths.hostsPath,
    paths.pidPath,
    paths.leasesPath,
    paths.configDir,
    paths.runDir,
    paths.dataDir,
    CONFIG_ROOT,
    unit,
    unitPath(unit),
    iface,
  ]);
}

const IpAddr = z.array(
  z
    .object({
      ifname: z.string(),
      addr_info: z
        .array(
          z
            .object({
              family: z.string(),
              local: z.string().optional(),
              prefixlen: z.number().optional(),
            })
            .loose(),
        )
        .default([]),
    })
    .loose(),
);

/** Returns each listed interface's IPv4 addresses (CIDR) from `ip -j addr show [dev IFACE]`. */
export function parseInterfaces(text: string): Record<string, string[]> {
  let parsed: z.infer<typeof IpAddr>;
  try {
    parsed = IpAddr.parse(JSON.parse(text.trim() || "[]"));
  } catch (e) {
    throw new Error(
      `unexpected output of ip -j addr show: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const out: Record<string, string[]> = {};
  for (const l of parsed) {
    out[l.ifname] = l.addr_info
      .filter((a) => a.family === "inet" && a.local !== undefined && a.prefixlen !== undefined)
      .map((a) => `${a.local}/${a.prefixlen}`);
  }
  return out;
}

/** Returns the dnsmasq processes listed by the probe (zombies left out). */
export function parseProcesses(text: string): DnsmasqProcess[] {
  const out: DnsmasqProcess[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\d+) (\d+) (\S+) (.*)$/.exec(line);
    if (!m || m[3] === "Z") continue;
    const argv = (m[4] ?? "").split("\x1f");
    if (argv[argv.length - 1] === "") argv.pop();
    out.push({ pid: Number(m[1]), ppid: Number(m[2]), argv });
  }
  return out;
}

/** Returns whether a process runs dnsmasq with exactly this config file (as the provider starts it). */
export function runsConfig(p: DnsmasqProcess, configPath: string): boolean {
  const [exe = "", arg, ...rest] = p.argv;
  return (
    (exe === "dnsmasq" || exe.endsWith("/dnsmasq")) &&
    arg === `--conf-file=${configPath}` &&
    rest.length === 0
  );
}

/** Returns the instance state parsed from the probe's output. */
export function parseDnsmasqState(
  name: string,
  stdout: string,
  wanted?: Pick<DnsmasqInstanceInputs, "interface" | "persistence">,
): DnsmasqState {
  const paths = dnsmasqPaths(name);
  const s = parseProbe(stdout, "the dnsmasq probe");
  // the last section: without it the probe stopped early
  const addresses = s.need("addresses");
  const ours = parseProcesses(s.need("processes")).filter((p) => runsConfig(p, paths.configPath));
  const oursPids = new Set(ours.map((p) => p.pid));
  // dnsmasq forks short-lived children (TCP DNS) with the same command line: only daemons count.
  const daemons = ours.filter((p) => !oursPids.has(p.ppid)).map((p) => p.pid);
  const fromFile = Number((s.get("pidfile") ?? "").trim());
  const pid = Number.isInteger(fromFile) && daemons.includes(fromFile) ? fromFile : undefined;
  const [c = "0", r = "0", d = "0"] = s.need("dirs").split("\n");
  const otherInstances: Record<string, string> = {};
  for (const line of s.need("instances").split("\n")) {
    const m = new RegExp(`^${CONFIG_ROOT}/([^/]+)/dnsmasq\\.conf:interface=(.*)$`).exec(line);
    if (m && m[1] !== name) otherInstances[m[1] ?? ""] = m[2] ?? "";
  }
  return {
    name,
    paths,
    pid,
    strays: daemons.filter((p) => p !== pid),
    config: s.get("config"),
    hosts: s.get("hosts"),
    dirs: { config: c === "1", run: r === "1", data: d === "1" },
    leases: parseLeases(s.get("leases") ?? ""),
    interfaces: parseInterfaces(addresses),
    otherInstances,
    persist: parsePersistProbe(s),
    mainPid: parseMainPid(s.get("mainpid")),
    exposed: parseExposed(s.get("modes")),
    wanted:
      wanted === undefined
        ? undefined
        : { interface: wanted.interface, persistence: wanted.persistence },
  };
}

/** Returns the files of `stat -c '%a %n'` lines that others may read (mode not 640 or 600). */
export function parseExposed(text: string | undefined): string[] {
  return (text ?? "")
    .split("\n")
    .map((l) => /^(\d+) (.+)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null && (parseInt(m[1] ?? "", 8) & 0o7) !== 0)
    .map((m) => m[2] ?? "");
}

/** Returns systemd's MainPID of a unit (`systemctl show -p MainPID --value`); 0 or none is undefined. */
export function parseMainPid(text: string | undefined): number | undefined {
  const n = Number((text ?? "").trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

type Wanted = Pick<DnsmasqInstanceInputs, "name" | "interface" | "persistence">;

/** Returns the instance's probe: its process and its surroundings in one remote command. */
export function probeDnsmasq(d: Wanted, ctx?: ObserveContext): ProbeCall {
  const unit = dnsmasqUnitName(d.name);
  return {
    // a delete's plan reads no address: after it, no interface (the probe prints none, no `ip`)
    call: observeCall(dnsmasqPaths(d.name), ctx?.after === "delete" ? "" : d.interface, unit),
    units: probeUnits(unit, "pid"),
  };
}

/** Returns the instance state from its probe's result. */
export function parseDnsmasqResult(r: RunResult, d: Wanted, ctx: ObserveContext): DnsmasqState {
  const state = parseDnsmasqState(d.name, r.stdout, d);
  if (d.persistence === "auto") warnNoSystemd(ctx.host, state.persist);
  return state;
}

/** Observes the instance, its process and its surroundings in one remote command. */
export function observeDnsmasq(host: Host, d: Wanted, ctx: ObserveContext): Promise<DnsmasqState> {
  return observeWith({ probe: probeDnsmasq, parse: parseDnsmasqResult }, host, d, ctx);
}
