import { z } from "zod";
import type { Host } from "../../host/host";
import { parseLeases } from "./render";
import {
  CONFIG_ROOT,
  dnsmasqPaths,
  type DnsmasqPaths,
  type DnsmasqProcess,
  type DnsmasqState,
} from "./schema";

export const MARK = "--pulumi-hypervisor--";

// One round trip. Every path arrives as a positional parameter. Processes are found by name in
// /proc and kept only when they share this shell's mount namespace: the config path names a file
// in this namespace, and a container (or another lab host) may run a dnsmasq with the same path.
const OBSERVE_SCRIPT = [
  "conf=$1 hosts=$2 pidf=$3 leases=$4 cdir=$5 rdir=$6 ddir=$7 root=$8",
  `section() { echo "${MARK} $1"; }`,
  'dump() { if [ -f "$2" ]; then section "$1 present"; cat -- "$2"; echo; else section "$1 absent"; fi; }',
  "self=$(readlink /proc/self/ns/mnt)",
  "section processes",
  "for d in /proc/[0-9]*; do",
  '  { read -r comm < "$d/comm"; } 2>/dev/null || continue',
  '  [ "$comm" = dnsmasq ] || continue',
  '  [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$self" ] || continue',
  '  { read -r _ _ state ppid _ < "$d/stat"; } 2>/dev/null || continue',
  "  args=$(tr '\\000' '\\037' < \"$d/cmdline\" 2>/dev/null) || continue",
  '  echo "${d#/proc/} $ppid $state $args"',
  "done",
  'dump pidfile "$pidf"',
  'dump config "$conf"',
  'dump hosts "$hosts"',
  'dump leases "$leases"',
  'section dirs; for x in "$cdir" "$rdir" "$ddir"; do if [ -d "$x" ]; then echo 1; else echo 0; fi; done',
  'section instances; for f in "$root"/*/dnsmasq.conf; do [ -f "$f" ] && grep -H "^interface=" "$f"; done; true',
  "section addresses; ip -j addr show",
  "section end",
].join("\n");

/** Returns the argv of the single observe probe for an instance. */
export function observeArgv(paths: DnsmasqPaths): string[] {
  return [
    "sh",
    "-c",
    OBSERVE_SCRIPT,
    "sh",
    paths.configPath,
    paths.hostsPath,
    paths.pidPath,
    paths.leasesPath,
    paths.configDir,
    paths.runDir,
    paths.dataDir,
    CONFIG_ROOT,
  ];
}

/** Returns the probe's sections by name; a file section is absent when its file is missing. */
export function splitSections(stdout: string): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  const re = new RegExp(`^${MARK} (\\S+)(?: (present|absent))?\\n`, "gm");
  const heads = [...stdout.matchAll(re)];
  heads.forEach((m, i) => {
    const name = m[1] ?? "";
    if (m[2] === "absent") {
      out.set(name, undefined);
      return;
    }
    const from = (m.index ?? 0) + m[0].length;
    const to = heads[i + 1]?.index ?? stdout.length;
    let body = stdout.slice(from, to);
    // `dump` adds one newline after the file so the next header starts a line: take it off.
    if (m[2] === "present") body = body.endsWith("\n") ? body.slice(0, -1) : body;
    out.set(name, body);
  });
  return out;
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

/** Returns each interface's IPv4 addresses (CIDR) from `ip -j addr show`. */
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
export function parseDnsmasqState(name: string, stdout: string): DnsmasqState {
  const paths = dnsmasqPaths(name);
  const s = splitSections(stdout);
  if (!s.has("end")) throw new Error("unexpected output of the dnsmasq probe: it stopped early");
  const ours = parseProcesses(s.get("processes") ?? "").filter((p) =>
    runsConfig(p, paths.configPath),
  );
  const oursPids = new Set(ours.map((p) => p.pid));
  // dnsmasq forks short-lived children (TCP DNS) with the same command line: only daemons count.
  const daemons = ours.filter((p) => !oursPids.has(p.ppid)).map((p) => p.pid);
  const fromFile = Number((s.get("pidfile") ?? "").trim());
  const pid = Number.isInteger(fromFile) && daemons.includes(fromFile) ? fromFile : undefined;
  const [c = "0", r = "0", d = "0"] = (s.get("dirs") ?? "").split("\n");
  const otherInstances: Record<string, string> = {};
  for (const line of (s.get("instances") ?? "").split("\n")) {
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
    interfaces: parseInterfaces(s.get("addresses") ?? ""),
    otherInstances,
  };
}

/** Observes the instance, its process and its surroundings in one remote command. */
export async function observeDnsmasq(host: Host, name: string): Promise<DnsmasqState> {
  const r = await host.run({ argv: observeArgv(dnsmasqPaths(name)) });
  return parseDnsmasqState(name, r.stdout);
}
