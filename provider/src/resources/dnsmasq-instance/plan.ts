import { hostAddressProblem, ipv4InCidr, ipv4NetworkAddress } from "../../net";
import { PlanError } from "../../errors";
import type { Step } from "../../step";
import { renderDhcpHosts, renderDnsmasqConf } from "./render";
import type { DnsmasqInstanceInputs, DnsmasqPaths, DnsmasqState } from "./schema";

// A shell function that succeeds when $pid is a live dnsmasq in this mount namespace started with
// exactly --conf-file=$conf (a zombie has an empty cmdline), so a reused pid is never signalled.
const IS_OURS = [
  "us=$(printf '\\037')",
  "ours() {",
  '  [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$(readlink /proc/self/ns/mnt)" ] || return 1',
  "  a=$(tr '\\000' '\\037' < \"/proc/$pid/cmdline\" 2>/dev/null) || return 1",
  '  exe=${a%%"$us"*}',
  '  case "$exe" in dnsmasq|*/dnsmasq) ;; *) return 1 ;; esac',
  '  [ "${a#*"$us"}" = "--conf-file=$conf$us" ]',
  "}",
  // An exiting process loses its cmdline before it closes its sockets: wait until it is a zombie
  // or reaped, or the next dnsmasq cannot bind.
  "gone() {",
  '  s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0',
  "  s=${s##*) }",
  '  [ "${s%% *}" = Z ]',
  "}",
  // TERM, then KILL after 5 s; returns once the process is gone.
  "stop() {",
  "  ours || return 0",
  '  kill -s TERM "$pid" 2>/dev/null || true',
  "  i=0",
  "  until gone; do",
  "    i=$((i + 1))",
  '    if [ "$i" -eq 100 ] && ours; then kill -s KILL "$pid" 2>/dev/null || true; fi',
  '    if [ "$i" -ge 200 ]; then echo "dnsmasq $pid did not exit after SIGKILL" >&2; return 1; fi',
  "    sleep 0.05",
  "  done",
  "}",
].join("\n");

export const STOP_SCRIPT = ["set -e", "pid=$1 conf=$2", IS_OURS, "stop"].join("\n");

// The hosts file arrives on stdin; it is renamed into place only when $pid is still our dnsmasq,
// and the SIGHUP follows at once, so the file on disk is the one the process has loaded.
export const RELOAD_SCRIPT = [
  "set -e",
  "pid=$1 conf=$2 hosts=$3",
  IS_OURS,
  'ours || { echo "process $pid is not dnsmasq running $conf (has it exited?)" >&2; exit 1; }',
  'th="$hosts.pulumi-tmp.$$"',
  "trap 'rm -f -- \"$th\"' EXIT",
  '(umask 022; cat > "$th")',
  'mv -f -- "$th" "$hosts"',
  'kill -s HUP "$pid"',
].join("\n");

// stdin is the config ($8 bytes, read with dd bs=1 so nothing past it is consumed) followed by the
// hosts file. Both are checked (dnsmasq --test) before anything changes, and replace the files
// only once the old process has exited: the files on disk always describe the running process.
export const START_SCRIPT = [
  "set -e",
  "conf=$1 hosts=$2 cdir=$3 rdir=$4 ddir=$5 pidf=$6 pid=$7 n=$8",
  IS_OURS,
  "umask 022",
  'mkdir -p -- "$cdir" "$rdir" "$ddir"',
  // dnsmasq reads the hosts file (at start and on SIGHUP) after dropping root: the path must be
  // traversable by its unprivileged user. Only search (x) permission is added to the parents.
  'chmod go+x /etc/pulumi-hypervisor /etc/pulumi-hypervisor/dnsmasq "$cdir"',
  'tc="$conf.pulumi-tmp.$$" th="$hosts.pulumi-tmp.$$"',
  'trap \'rm -f -- "$tc" "$th"\' EXIT',
  'dd bs=1 count="$n" of="$tc" 2>/dev/null',
  'cat > "$th"',
  'if ! out=$(dnsmasq --test --conf-file="$tc" 2>&1); then echo "dnsmasq --test rejected the config: $out" >&2; exit 1; fi',
  'if [ -n "$pid" ]; then stop; fi',
  'mv -f -- "$th" "$hosts"',
  'mv -f -- "$tc" "$conf"',
  'rm -f -- "$pidf"',
  'dnsmasq --conf-file="$conf"',
].join("\n");

/** Returns the step that stops an instance's dnsmasq (verified by its command line first). */
export function stopStep(name: string, pid: number, configPath: string, why = ""): Step {
  return {
    summary: `stop dnsmasq ${name} (pid ${pid})${why}`,
    argv: ["sh", "-c", STOP_SCRIPT, "sh", String(pid), configPath],
  };
}

/** Returns the step that rewrites the hosts file and makes the running dnsmasq re-read it (SIGHUP). */
export function reloadStep(name: string, pid: number, paths: DnsmasqPaths, hosts: string): Step {
  return {
    summary: `write the static leases of dnsmasq ${name} and reload them (SIGHUP to pid ${pid}; no restart, leases kept)`,
    argv: ["sh", "-c", RELOAD_SCRIPT, "sh", String(pid), paths.configPath, paths.hostsPath],
    stdin: hosts,
  };
}

/** Returns the step that checks and installs config and hosts file and starts dnsmasq, stopping `pid` first. */
export function startStep(
  d: DnsmasqInstanceInputs,
  paths: DnsmasqPaths,
  pid: number | undefined,
): Step {
  const conf = renderDnsmasqConf(d);
  const p = paths;
  return {
    summary:
      pid === undefined
        ? `check (dnsmasq --test) and install the config of dnsmasq ${d.name}, and start it on ${d.interface}`
        : `check (dnsmasq --test) and install the config of dnsmasq ${d.name}, and restart it on ${d.interface} (pid ${pid}; leases kept)`,
    argv: [
      "sh",
      "-c",
      START_SCRIPT,
      "sh",
      p.configPath,
      p.hostsPath,
      p.configDir,
      p.runDir,
      p.dataDir,
      p.pidPath,
      pid === undefined ? "" : String(pid),
      String(Buffer.byteLength(conf)),
    ],
    stdin: conf + renderDhcpHosts(d.staticLeases),
  };
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
  const steps: Step[] = [];
  if (actual.pid !== undefined) steps.push(stopStep(actual.name, actual.pid, p.configPath));
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
  if (actual.pid !== undefined && actual.config === conf) {
    // dnsmasq re-reads --dhcp-hostsfile on SIGHUP: the process, its pid and its leases stay.
    if (actual.hosts !== hosts) steps.push(reloadStep(d.name, actual.pid, p, hosts));
    return steps;
  }
  steps.push(startStep(d, p, actual.pid));
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
