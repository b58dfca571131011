import { PlanError } from "../../errors";
import { declareRunsInShell, scriptIn } from "../../host/script";
import { hostAddressProblem, ipv4InCidr, ipv4NetworkAddress } from "../../net";
import { planPersistence } from "../../persist/persistence";
import type { Step } from "../../step";
import { renderDhcpHosts, renderDnsmasqConf } from "./render";
import type { DnsmasqInstanceInputs, DnsmasqPaths, DnsmasqState } from "./schema";
import { supervised, wantedForm } from "./unit";

// Reviewed against declareRunsInShell's contract: a step of a batch sources them in a subshell, with
// no shell process of their own. Their temporary files' $$ is then the loop's pid, unique among
// the host's shells, and the host lock keeps two operations on one instance apart.
for (const s of [
  "dnsmasq-start.sh",
  "dnsmasq-stop.sh",
  "dnsmasq-reload.sh",
  "dnsmasq-private.sh",
]) {
  declareRunsInShell(s);
}

/** Returns the step that stops an instance's dnsmasq (verified by its command line first). */
export function stopStep(name: string, pid: number, configPath: string, why = ""): Step {
  return {
    summary: `stop dnsmasq ${name} (pid ${pid})${why}`,
    script: scriptIn(__dirname, "dnsmasq-stop.sh", [String(pid), configPath]),
  };
}

/** Returns the step that rewrites the hosts file and makes the running dnsmasq re-read it (SIGHUP). */
export function reloadStep(name: string, pid: number, paths: DnsmasqPaths, hosts: string): Step {
  return {
    summary: `write the static leases of dnsmasq ${name} and reload them (SIGHUP to pid ${pid}; no restart, leases kept)`,
    script: scriptIn(__dirname, "dnsmasq-reload.sh", [
      String(pid),
      paths.configPath,
      paths.hostsPath,
    ]),
    stdin: hosts,
  };
}

/**
 * Returns the step that checks and installs config and hosts file and starts dnsmasq, stopping `pid`
 * first. With `unit`, systemd starts dnsmasq afterwards: the step only installs, stopping the unit
 * first when `unit.stop` names it.
 */
export function startStep(
  d: DnsmasqInstanceInputs,
  paths: DnsmasqPaths,
  pid: number | undefined,
  unit?: { stop: string | undefined },
): Step {
  const conf = renderDnsmasqConf(d);
  const p = paths;
  const what = `check (dnsmasq --test) and install the config of dnsmasq ${d.name}`;
  const stopping =
    unit?.stop !== undefined ? `stop ${unit.stop}` : pid !== undefined ? `stop pid ${pid}` : "";
  return {
    summary:
      unit !== undefined
        ? `${what}${stopping !== "" ? ` (${stopping} first; leases kept)` : ""}; its unit starts it on ${d.interface}`
        : pid === undefined
          ? `${what}, and start it on ${d.interface}`
          : `${what}, and restart it on ${d.interface} (pid ${pid}; leases kept)`,
    script: scriptIn(__dirname, "dnsmasq-start.sh", [
      p.configPath,
      p.hostsPath,
      p.configDir,
      p.runDir,
      p.dataDir,
      p.pidPath,
      p.leasesPath,
      pid === undefined ? "" : String(pid),
      String(Buffer.byteLength(conf)),
      ...(unit !== undefined ? ["install", unit.stop ?? ""] : []),
    ]),
    stdin: conf + renderDhcpHosts(d.staticLeases),
  };
}

/** Returns the step that makes files of an older version private (0640 root:dnsmasq's group). */
export function privateSteps(name: string, files: readonly string[]): Step[] {
  if (files.length === 0) return [];
  return [
    {
      summary: `make the files of dnsmasq ${name} readable by root and dnsmasq's group only (${files.join(", ")})`,
      script: scriptIn(__dirname, "dnsmasq-private.sh", [...files]),
    },
  ];
}

/** Returns the steps that take the host from `actual` to `desired` (undefined: delete). */
export function planDnsmasqInstance(
  desired: DnsmasqInstanceInputs | undefined,
  actual: DnsmasqState,
): Step[] {
  return desired === undefined ? planDelete(actual) : planConverge(desired, actual);
}

function planDelete(actual: DnsmasqState): Step[] {
  const p = actual.paths;
  // `systemctl disable --now` stops a daemon the unit supervises, so systemd does not restart it.
  const steps: Step[] = planPersistence(undefined, actual.persist);
  if (actual.pid !== undefined && !supervised(actual)) {
    steps.push(stopStep(actual.name, actual.pid, p.configPath));
  }
  for (const stray of actual.strays) {
    steps.push(stopStep(actual.name, stray, p.configPath, " (not in its pid file)"));
  }
  const dirs = [
    ...(actual.dirs.config ? [p.configDir] : []),
    ...(actual.dirs.run ? [p.runDir] : []),
    ...(actual.dirs.data ? [p.dataDir] : []),
  ];
  if (dirs.length > 0) {
    steps.push({
      summary: `remove the files of dnsmasq ${actual.name} (${dirs.join(", ")})`,
      argv: ["rm", "-rf", "--", ...dirs],
    });
  }
  return steps;
}

// The exposed files a step does not rewrite anyway (a reload rewrites the hosts file privately).
function exposedBesides(actual: DnsmasqState, reloading: boolean): string[] {
  return (actual.exposed ?? []).filter((f) => !(reloading && f === actual.paths.hostsPath));
}

function planConverge(d: DnsmasqInstanceInputs, actual: DnsmasqState): Step[] {
  refuseUnservable(d, actual);
  const p = actual.paths;
  const conf = renderDnsmasqConf(d);
  const hosts = renderDhcpHosts(d.staticLeases);
  const steps: Step[] = actual.strays.map((stray) =>
    stopStep(
      d.name,
      stray,
      p.configPath,
      " (runs this instance's config but is not in its pid file)",
    ),
  );
  const form = wantedForm(actual, d);
  const underUnit = supervised(actual);
  if (form === undefined) {
    // Runtime only: a unit left from "auto" goes first (disable --now stops what it supervises).
    const unpersist = planPersistence(undefined, actual.persist);
    steps.push(...unpersist);
    const pid = unpersist.length > 0 && underUnit ? undefined : actual.pid;
    if (pid !== undefined && actual.config === conf) {
      // dnsmasq re-reads --dhcp-hostsfile on SIGHUP: the process, its pid and its leases stay.
      if (actual.hosts !== hosts) steps.push(reloadStep(d.name, pid, p, hosts));
      steps.push(...privateSteps(d.name, exposedBesides(actual, actual.hosts !== hosts)));
      return steps;
    }
    steps.push(startStep(d, p, pid));
    return steps;
  }
  if (underUnit && actual.pid !== undefined && actual.config === conf) {
    if (actual.hosts !== hosts) steps.push(reloadStep(d.name, actual.pid, p, hosts));
    steps.push(...privateSteps(d.name, exposedBesides(actual, actual.hosts !== hosts)));
    steps.push(...planPersistence(form, actual.persist));
    return steps;
  }
  // (Re)started by its unit: the install step stops whatever runs, systemd starts the new config.
  const active = actual.persist.active === "active";
  steps.push(startStep(d, p, actual.pid, { stop: active ? form.unit : undefined }));
  steps.push(...planPersistence(form, { ...actual.persist, active: "inactive" }));
  return steps;
}

/** Throws a PlanError when dnsmasq could not serve the inputs on this host's interface. */
function refuseUnservable(d: DnsmasqInstanceInputs, actual: DnsmasqState): void {
  const iface = d.interface;
  for (const [other, otherIface] of Object.entries(actual.otherInstances)) {
    if (otherIface === iface) {
      throw new PlanError(
        `interface ${iface} is already served by dnsmasq instance ${JSON.stringify(other)}; one instance per interface`,
      );
    }
  }
  const addresses = actual.interfaces[iface];
  if (addresses === undefined) {
    throw new PlanError(
      `interface ${JSON.stringify(iface)} does not exist on the host; create it first (e.g. a Bridge)`,
      { missingLink: iface },
    );
  }
  const has = addresses.length ? addresses.join(", ") : "none";
  const { start, end } = d.dhcpRange;
  let subnet = d.subnet;
  if (subnet !== undefined) {
    const s = subnet;
    if (!addresses.some((a) => ipv4InCidr(a.split("/")[0] ?? "", s))) {
      throw new PlanError(
        `interface ${iface} has no IPv4 address in subnet ${s} (it has: ${has}), so dnsmasq would not answer DHCP there`,
      );
    }
  } else {
    const own = addresses.find((a) => ipv4InCidr(start, a));
    if (own === undefined) {
      throw new PlanError(
        `interface ${iface} has no IPv4 address in the network of dhcpRange.start ${start} (it has: ${has}); add one to the interface, or fix dhcpRange`,
      );
    }
    const [ip = "", bits = "32"] = own.split("/");
    subnet = `${ipv4NetworkAddress(ip, Number(bits))}/${bits}`;
  }
  const check = (property: string, address: string): void => {
    const why = hostAddressProblem(address, subnet);
    if (why) throw new PlanError(`${property}: ${why} of interface ${iface}`);
  };
  check("dhcpRange.start", start);
  check("dhcpRange.end", end);
  d.staticLeases.forEach((l, i) => {
    check(`staticLeases[${i}].ip`, l.ip);
    if (addresses.some((a) => a.split("/")[0] === l.ip)) {
      throw new PlanError(
        `staticLeases[${i}].ip: ${l.ip} is an address of interface ${iface} itself`,
      );
    }
  });
  if (d.router !== undefined) check("router", d.router);
}
