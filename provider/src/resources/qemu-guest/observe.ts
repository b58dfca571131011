import { z } from "zod";
import { BRIDGE_CONF } from "../../bridge-helper-acl";
import type { Host } from "../../host/host";
import { guestPaths, macsInArgv, nameInArgv, QEMU_BINARY } from "./argv";
import {
  answerValue,
  parseQmpAnswers,
  QMP_FUNCTION,
  QueryKvm,
  QueryName,
  QueryStatus,
} from "./qmp";
import type { DiskImage, HostLink, QemuGuestInputs, QemuGuestState, QemuProcess } from "./schema";

export const SECTION = "--pulumi-hypervisor--";
/** Where distributions install qemu-bridge-helper (Debian first). */
export const BRIDGE_HELPER_PATHS = [
  "/usr/lib/qemu/qemu-bridge-helper",
  "/usr/libexec/qemu-bridge-helper",
  "/usr/local/libexec/qemu-bridge-helper",
];
/** How long a KVM guest gets to reach SeaBIOS's boot menu before KVM counts as not working. */
export const KVM_PROBE_TENTHS = 30;

// Opening /dev/kvm is not enough: with broken nested virtualization QEMU starts and the vCPU makes
// no progress. So a real KVM guest (SeaBIOS, no disks) must print its boot message on the debug
// console within the deadline; under TCG on the same machine this takes about 0.2 s.
const KVM_PROBE = `kvm_probe() {
  if [ ! -e /dev/kvm ]; then echo "unusable /dev/kvm does not exist"; return; fi
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo "unusable /dev/kvm is not readable and writable"; return; fi
  kd=$(mktemp -d) || { echo "unusable mktemp failed"; return; }
  if ${QEMU_BINARY} -accel kvm -machine pc -m 16 -display none -nodefaults -no-user-config \\
      -debugcon "file:$kd/log" -global isa-debugcon.iobase=0x402 -daemonize -pidfile "$kd/pid" >"$kd/err" 2>&1; then
    n=0
    while [ $n -lt ${KVM_PROBE_TENTHS} ] && ! grep -q -e 'No bootable device' -e 'Booting from' "$kd/log" 2>/dev/null; do
      sleep 0.1; n=$((n + 1))
    done
    kp=$(cat "$kd/pid" 2>/dev/null)
    [ -n "$kp" ] && kill -KILL "$kp" 2>/dev/null
    if [ $n -lt ${KVM_PROBE_TENTHS} ]; then echo usable
    else echo "unusable a KVM guest made no progress in ${KVM_PROBE_TENTHS / 10} s (nested virtualization not working?)"; fi
  else
    echo "unusable $(grep -v '^qemu-system-x86_64: warning' "$kd/err" | head -n 3 | tr '\\n' ' ')"
  fi
  rm -rf "$kd"
}`;

// One round trip. Positional parameters: name pidfile socket configfile rundir configdir seriallog
// runas probe-kvm(0/1) bridge-conf(0/1), then counted lists: disks, links, files.
const OBSERVE_SCRIPT = [
  "name=$1 pidfile=$2 sock=$3 config=$4 rundir=$5 configdir=$6 log=$7 runas=$8 probe=$9",
  "shift 9",
  "bconf=$1; shift",
  `sec() { echo "${SECTION} $*"; }`,
  "hex() { od -An -v -tx1 \"$1\" 2>/dev/null | tr -d ' \\n'; }",
  QMP_FUNCTION,
  KVM_PROBE,
  "sec uid; id -u",
  "sec programs",
  `for p in ${QEMU_BINARY} qemu-img socat; do command -v "$p" >/dev/null 2>&1 && echo "$p"; done`,
  "sec present",
  '[ -d "$rundir" ] && echo runDir',
  '[ -d "$configdir" ] && echo configDir',
  '[ -e "$log" ] && echo serialLog',
  'pid=$(cat -- "$pidfile" 2>/dev/null || true)',
  "case $pid in ''|*[!0-9]*) pid= ;; esac",
  // The pid is ours only when that process was started with our pid file (pids get reused).
  'if [ -n "$pid" ] && tr \'\\0\' \'\\n\' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pidfile"; then',
  '  sec process "$pid"; hex "/proc/$pid/cmdline"; echo',
  "  sec qmp",
  `  qmp "$sock" '{"execute":"query-status"}' '{"execute":"query-name"}' '{"execute":"query-kvm"}' 2>/dev/null`,
  "else",
  "  pid=",
  "fi",
  'if [ -f "$config" ]; then sec config present; cat -- "$config"; echo; fi',
  'root=$(dirname -- "$configdir")',
  'for f in "$root"/*/guest.json; do',
  '  [ -f "$f" ] && [ "$f" != "$config" ] || continue',
  '  sec other-config "$(basename -- "$(dirname -- "$f")")"; cat -- "$f"; echo',
  "done",
  // Other QEMU processes in this network namespace (comm is read with a builtin: no fork per pid).
  "mynet=$(readlink /proc/self/ns/net)",
  "for d in /proc/[0-9]*; do",
  '  [ "$d" = "/proc/$pid" ] && continue',
  '  read -r c 2>/dev/null <"$d/comm" || continue',
  "  case $c in qemu-system-*|qemu-kvm|kvm) ;; *) continue ;; esac",
  '  [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$mynet" ] || continue',
  '  sec other-process "${d#/proc/}"; hex "$d/cmdline"; echo',
  "done",
  "n=$1; shift; i=0",
  'while [ "$i" -lt "$n" ]; do',
  '  sec disk "$1"',
  '  if [ -e "$1" ]; then',
  '    if out=$(qemu-img info -U --output=json "$1" 2>&1); then printf \'%s\\n\' "$out"; else printf \'error %s\\n\' "$out"; fi',
  "  fi",
  "  shift; i=$((i + 1))",
  "done",
  "n=$1; shift; i=0",
  'while [ "$i" -lt "$n" ]; do',
  '  sec link "$1"; ip -j -d link show dev "$1" 2>/dev/null',
  "  shift; i=$((i + 1))",
  "done",
  "n=$1; shift; i=0",
  'while [ "$i" -lt "$n" ]; do',
  '  [ -r "$1" ] || { sec missing-file "$1"; }',
  "  shift; i=$((i + 1))",
  "done",
  // qemu-bridge-helper reads bridge.conf and the files it includes (errors in includes ignored).
  "conf() {",
  '  [ "$2" -gt 8 ] && return',
  '  [ -r "$1" ] || return',
  '  sec bridge-conf "$1"; cat -- "$1"; echo',
  '  for inc in $(sed -n \'s/^[[:space:]]*include[[:space:]][[:space:]]*//p\' "$1"); do conf "$inc" $(($2 + 1)); done',
  "}",
  `if [ "$bconf" = 1 ]; then`,
  `  conf ${BRIDGE_CONF} 0`,
  `  for h in ${BRIDGE_HELPER_PATHS.join(" ")}; do`,
  '    if [ -x "$h" ]; then sec bridge-helper; stat -c \'%u %a %n\' -- "$h"; break; fi',
  "  done",
  "fi",
  'if [ -n "$runas" ]; then sec runas; id -u -- "$runas" 2>/dev/null || echo missing; fi',
  'if [ "$probe" = 1 ] && [ -z "$pid" ]; then sec kvm; kvm_probe; fi',
].join("\n");

/** Returns the argv of the single observe probe. */
export function observeArgv(g: QemuGuestInputs, probeKvm: boolean): string[] {
  const p = guestPaths(g.name);
  const links = [...new Set(g.nics.map((n) => n.tap ?? n.bridge ?? ""))];
  const files = [g.kernel, g.initrd, g.cdrom].filter((f): f is string => f !== undefined);
  return [
    "sh",
    "-c",
    OBSERVE_SCRIPT,
    "sh",
    g.name,
    p.pidFile,
    p.qmpSocket,
    p.configFile,
    p.runDir,
    p.configDir,
    p.serialLog,
    g.runAs ?? "",
    probeKvm ? "1" : "0",
    g.nics.some((n) => n.bridge !== undefined) ? "1" : "0",
    String(g.disks.length),
    ...g.disks.map((d) => d.path),
    String(links.length),
    ...links,
    String(files.length),
    ...files,
  ];
}

export interface Section {
  name: string;
  arg: string;
  body: string;
}

/** Returns the probe's output split at its section headers. */
export function splitSections(stdout: string): Section[] {
  const out: Section[] = [];
  let cur: Section | undefined;
  const lines: string[] = [];
  const flush = (): void => {
    if (cur) out.push({ ...cur, body: lines.join("\n") });
    lines.length = 0;
  };
  for (const line of stdout.split("\n")) {
    if (line.startsWith(`${SECTION} `)) {
      flush();
      const rest = line.slice(SECTION.length + 1);
      const sp = rest.indexOf(" ");
      cur =
        sp < 0
          ? { name: rest, arg: "", body: "" }
          : { name: rest.slice(0, sp), arg: rest.slice(sp + 1), body: "" };
    } else if (cur) {
      lines.push(line);
    }
  }
  flush();
  return out;
}

/** Returns the argv encoded as hex bytes of /proc/<pid>/cmdline (NUL-separated). */
export function decodeCmdline(hex: string): string[] {
  const clean = hex.trim();
  if (!/^([0-9a-f]{2})*$/.test(clean))
    throw new Error(`unexpected /proc cmdline dump ${JSON.stringify(clean.slice(0, 80))}`);
  const text = Buffer.from(clean, "hex").toString("utf8");
  const parts = text.split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

const QemuImgInfo = z.object({ format: z.string(), "virtual-size": z.number() }).loose();
const IpLink = z
  .object({
    ifname: z.string(),
    master: z.string().optional(),
    linkinfo: z
      .object({
        info_kind: z.string().optional(),
        info_data: z.object({ type: z.string().optional() }).loose().optional(),
      })
      .loose()
      .optional(),
  })
  .loose();
const GuestConfig = z.object({ name: z.string(), macs: z.array(z.string()) }).loose();

function parseDisk(path: string, body: string): DiskImage {
  const text = body.trim();
  if (text.startsWith("error ")) throw new Error(`qemu-img info ${path} failed: ${text.slice(6)}`);
  try {
    const info = QemuImgInfo.parse(JSON.parse(text));
    return { format: info.format, virtualSize: info["virtual-size"] };
  } catch (e) {
    throw new Error(
      `unexpected output of qemu-img info ${path}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

function parseLink(name: string, body: string): HostLink | undefined {
  const text = body.trim();
  if (text === "") return undefined;
  try {
    const l = z.array(IpLink).parse(JSON.parse(text))[0];
    if (l === undefined) return undefined;
    return { kind: l.linkinfo?.info_kind, tunType: l.linkinfo?.info_data?.type, master: l.master };
  } catch (e) {
    throw new Error(
      `unexpected output of ip -j -d link show dev ${name}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

/** Returns the guest's state parsed from the probe's output. */
export function parseQemuGuestState(g: QemuGuestInputs, stdout: string): QemuGuestState {
  const sections = splitSections(stdout);
  const one = (name: string): Section | undefined => sections.find((s) => s.name === name);
  const all = (name: string): Section[] => sections.filter((s) => s.name === name);
  const lines = (s: Section | undefined): string[] =>
    (s?.body ?? "")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "");

  const uidText = lines(one("uid"))[0];
  if (uidText === undefined || !/^\d+$/.test(uidText)) {
    throw new Error(
      `unexpected observe output (no uid section): ${JSON.stringify(stdout.slice(0, 200))}`,
    );
  }
  const programs = new Set(lines(one("programs")));
  const present = new Set(lines(one("present")));

  let process: QemuProcess | undefined;
  const ps = one("process");
  if (ps) {
    const answers = parseQmpAnswers(one("qmp")?.body ?? "");
    const status = answerValue(answers[0], QueryStatus, "query-status");
    const name = answerValue(answers[1], QueryName, "query-name");
    const kvm = answerValue(answers[2], QueryKvm, "query-kvm");
    process = {
      pid: Number(ps.arg),
      argv: decodeCmdline(ps.body),
      status: status?.status,
      accel: kvm === undefined ? undefined : kvm.enabled ? "kvm" : "tcg",
      qmpName: name?.name,
    };
  }

  const otherMacs: { mac: string; owner: string }[] = [];
  for (const s of all("other-config")) {
    const parsed = GuestConfig.safeParse(safeJson(s.body));
    // A config file that is not the provider's format owns nothing the provider can read.
    if (!parsed.success) continue;
    for (const mac of parsed.data.macs)
      otherMacs.push({ mac: mac.toLowerCase(), owner: `guest ${JSON.stringify(s.arg)}` });
  }
  const processes = all("other-process").map((s) => ({ pid: s.arg, argv: decodeCmdline(s.body) }));
  for (const p of processes) {
    const name = nameInArgv(p.argv);
    const owner = `QEMU process ${p.pid}${name !== undefined ? ` (${JSON.stringify(name)})` : ""}`;
    for (const mac of macsInArgv(p.argv)) otherMacs.push({ mac, owner });
  }

  const disks: Record<string, DiskImage | undefined> = {};
  for (const d of g.disks) disks[d.path] = undefined;
  for (const s of all("disk")) {
    if (s.body.trim() !== "") disks[s.arg] = parseDisk(s.arg, s.body);
  }
  const links: Record<string, HostLink | undefined> = {};
  for (const s of all("link")) links[s.arg] = parseLink(s.arg, s.body);

  const confSections = all("bridge-conf");
  const helperLine = lines(one("bridge-helper"))[0];
  let bridgeHelper: QemuGuestState["bridgeHelper"];
  if (helperLine !== undefined) {
    const [uid = "", mode = "", ...rest] = helperLine.split(" ");
    bridgeHelper = {
      path: rest.join(" "),
      setuidRoot: uid === "0" && (parseInt(mode, 8) & 0o4000) !== 0,
    };
  }
  const runas = one("runas");
  const kvmLine = lines(one("kvm"))[0];
  return {
    name: g.name,
    inputs: g,
    uid: Number(uidText),
    programs: {
      qemu: programs.has(QEMU_BINARY),
      qemuImg: programs.has("qemu-img"),
      socat: programs.has("socat"),
    },
    process,
    config: one("config") ? (one("config")?.body ?? "").trim() + "\n" : undefined,
    present: {
      runDir: present.has("runDir"),
      configDir: present.has("configDir"),
      serialLog: present.has("serialLog"),
    },
    otherMacs,
    disks,
    links,
    bridgeConf:
      confSections.length > 0 && confSections[0]?.arg === BRIDGE_CONF
        ? confSections.flatMap((s) => s.body.split("\n"))
        : undefined,
    bridgeHelper,
    missingFiles: all("missing-file").map((s) => s.arg),
    runAsExists: runas === undefined ? undefined : lines(runas)[0] !== "missing",
    kvm:
      kvmLine === undefined
        ? undefined
        : kvmLine === "usable"
          ? { usable: true, reason: "" }
          : { usable: false, reason: kvmLine.replace(/^unusable\s*/, "").trim() },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// KVM usability per host for this provider process: the probe costs up to 3 s where nested
// virtualization is broken, and whether KVM works does not change between the steps of a deployment.
const KVM_CACHE_MS = 10 * 60 * 1000;
const kvmCache = new Map<string, { at: number; kvm: { usable: boolean; reason: string } }>();

/** Observes the guest, its surroundings and (when a start may need it) KVM, in one remote command. */
export async function observeQemuGuest(host: Host, g: QemuGuestInputs): Promise<QemuGuestState> {
  const cached = kvmCache.get(host.label);
  const fresh =
    cached !== undefined && Date.now() - cached.at < KVM_CACHE_MS ? cached.kvm : undefined;
  const wantKvm = g.running && g.accel !== "tcg" && fresh === undefined;
  const r = await host.run({ argv: observeArgv(g, wantKvm) });
  const state = parseQemuGuestState(g, r.stdout);
  if (state.kvm !== undefined) kvmCache.set(host.label, { at: Date.now(), kvm: state.kvm });
  else if (fresh !== undefined) state.kvm = fresh;
  return state;
}
