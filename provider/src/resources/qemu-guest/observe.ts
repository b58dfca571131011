import { z } from "zod";
import { BRIDGE_CONF } from "../../bridge-helper-acl";
import type { Host, RunResult } from "../../host/host";
import { parseProbe, type ProbeSection } from "../../host/probe";
import { logWarn } from "../../log";
import { parsePersistProbe, probeUnits, warnNoSystemd } from "../../persist/persistence";
import { unitPath } from "../../persist/systemd-unit";
import { scriptIn, type ScriptCall } from "../../host/script";
import { observeWith, type ObserveContext, type ProbeCall } from "../../resource";
import { diskMarkerPath, guestPaths, macsInArgv, nameInArgv, QEMU_BINARY } from "./argv";
import { answerValue, parseQmpAnswers, QueryKvm, QueryName, QueryStatus } from "./qmp";
import type {
  DiskImage,
  DiskKind,
  HostLink,
  QemuGuestInputs,
  QemuGuestState,
  QemuProcess,
} from "./schema";
import { guestUnitName } from "./unit";

/** Where distributions install qemu-bridge-helper (Debian first). */
export const BRIDGE_HELPER_PATHS = [
  "/usr/lib/qemu/qemu-bridge-helper",
  "/usr/libexec/qemu-bridge-helper",
  "/usr/local/libexec/qemu-bridge-helper",
];
/** How long a KVM guest gets to reach SeaBIOS's boot menu before KVM counts as not working (kvm-probe.sh). */
export const KVM_PROBE_TENTHS = 30;

/** Returns the call of the single observe probe (qemu-probe.sh). */
export function observeCall(g: QemuGuestInputs, probeKvm: boolean): ScriptCall {
  const p = guestPaths(g.name);
  const links = [...new Set(g.nics.map((n) => n.tap ?? n.bridge ?? ""))];
  const files = [g.kernel, g.initrd, g.cdrom].filter((f): f is string => f !== undefined);
  return scriptIn(__dirname, "qemu-probe.sh", [
    g.name,
    p.pidFile,
    p.qmpSocket,
    p.configFile,
    p.runDir,
    p.configDir,
    p.serialLog,
    g.runAs ?? "",
    probeKvm ? g.machine : "",
    g.nics.some((n) => n.bridge !== undefined) ? "1" : "0",
    String(g.disks.length),
    ...g.disks.flatMap((d) => [d.path, diskMarkerPath(d.path)]),
    String(links.length),
    ...links,
    String(files.length),
    ...files,
    guestUnitName(g.name),
    unitPath(guestUnitName(g.name)),
    p.startScript,
    p.stopScript,
  ]);
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

const DISK_KINDS: readonly string[] = [
  "file",
  "symlink",
  "directory",
  "fifo",
  "socket",
  "char-device",
  "block-device",
  "other",
] satisfies DiskKind[];

// The disk-file section: `KIND BYTES created|foreign`, then a symlink's target.
function parseDiskFile(path: string, body: string): DiskImage {
  const [head = "", target] = body.replace(/\n$/, "").split("\n");
  const m = /^([a-z-]+) (\d+) (created|foreign)$/.exec(head.trim());
  if (!m?.[1] || !DISK_KINDS.includes(m[1])) {
    throw new Error(
      `unexpected disk-file section for ${path}: ${JSON.stringify(body.slice(0, 200))}`,
    );
  }
  return {
    kind: m[1] as DiskKind,
    bytes: Number(m[2]),
    created: m[3] === "created",
    target: m[1] === "symlink" ? target : undefined,
    format: undefined,
    virtualSize: undefined,
  };
}

function parseDiskInfo(path: string, body: string): { format: string; virtualSize: number } {
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
  const out = parseProbe(stdout, "the qemu guest probe");
  const one = (name: string): ProbeSection | undefined => out.all(name)[0];
  const all = (name: string): ProbeSection[] => out.all(name);
  const lines = (s: ProbeSection | undefined): string[] =>
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
  for (const s of all("disk-file")) disks[s.arg] = parseDiskFile(s.arg, s.body);
  for (const s of all("disk")) {
    const file = disks[s.arg];
    if (file === undefined)
      throw new Error(`qemu-img info of ${s.arg} without its disk-file section`);
    disks[s.arg] = { ...file, ...parseDiskInfo(s.arg, s.body) };
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
  const dnsmasqByInterface: Record<string, string[]> = {};
  for (const line of lines(one("dnsmasq"))) {
    const m = /^\/etc\/pulumi-hypervisor\/dnsmasq\/([^/]+)\/dnsmasq\.conf:interface=(.+)$/.exec(
      line,
    );
    if (m?.[1] !== undefined && m[2] !== undefined) {
      (dnsmasqByInterface[m[2]] ??= []).push(m[1]);
    }
  }
  const mainPid = Number(lines(one("mainpid"))[0] ?? "");
  const runas = one("runas");
  const kvmLine = lines(one("kvm"))[0];
  const fallback = lines(one("accel-fallback")).join(" ");
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
    accelFallback: process !== undefined && fallback !== "" ? fallback : undefined,
    persist: parsePersistProbe(out),
    mainPid: Number.isInteger(mainPid) && mainPid > 0 ? mainPid : undefined,
    dnsmasqByInterface,
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const warnedFallbacks = new Set<string>();

// Once per QEMU process and provider process: every observe of the guest would repeat it.
function warnTcgFallback(hostLabel: string, state: QemuGuestState): void {
  const proc = state.process;
  if (proc === undefined || state.accelFallback === undefined) return;
  const key = `${hostLabel} ${state.name} ${proc.pid}`;
  if (warnedFallbacks.has(key)) return;
  warnedFallbacks.add(key);
  logWarn(
    `qemu guest "${state.name}" on ${hostLabel}: accel "auto" runs it on TCG, not KVM (much slower): ${state.accelFallback}`,
  );
}

// KVM usability per host and machine type for this provider process: the probe costs up to 3 s
// where nested virtualization is broken, and it does not change between the steps of a deployment.
const KVM_CACHE_MS = 10 * 60 * 1000;
const kvmCache = new Map<string, { at: number; kvm: { usable: boolean; reason: string } }>();

// The cached KVM answer while fresh.
function freshKvm(key: string): { usable: boolean; reason: string } | undefined {
  const cached = kvmCache.get(key);
  return cached !== undefined && Date.now() - cached.at < KVM_CACHE_MS ? cached.kvm : undefined;
}

/** Returns the guest's probe: the guest, its surroundings and (when a start may need it) KVM. */
export function probeQemuGuest(g: QemuGuestInputs, ctx: ObserveContext): ProbeCall {
  // accel "auto" decides at the start, on the host (qemu-start.sh); "kvm" fails the plan early.
  const wantKvm =
    g.running && g.accel === "kvm" && freshKvm(`${ctx.host} ${g.machine}`) === undefined;
  return { call: observeCall(g, wantKvm), units: probeUnits(guestUnitName(g.name), "pid") };
}

/** Returns the guest's state from its probe's result (KVM from the cache when it did not ask). */
export function parseQemuGuestResult(
  r: RunResult,
  g: QemuGuestInputs,
  ctx: ObserveContext,
): QemuGuestState {
  const key = `${ctx.host} ${g.machine}`;
  const state = parseQemuGuestState(g, r.stdout);
  if (g.persistence === "auto") warnNoSystemd(ctx.host, state.persist);
  // A probe built before a long apply may find the answer it relied on just expired: take it.
  const cached = kvmCache.get(key)?.kvm;
  if (state.kvm !== undefined) kvmCache.set(key, { at: Date.now(), kvm: state.kvm });
  else if (cached !== undefined) state.kvm = cached;
  warnTcgFallback(ctx.host, state);
  return state;
}

/** Observes the guest, its surroundings and (when a start may need it) KVM, in one remote command. */
export function observeQemuGuest(
  host: Host,
  g: QemuGuestInputs,
  ctx: ObserveContext,
): Promise<QemuGuestState> {
  return observeWith({ probe: probeQemuGuest, parse: parseQemuGuestResult }, host, g, ctx);
}
