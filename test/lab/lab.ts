// Lab hosts: Linux network namespaces on this machine that look like real hypervisor hosts to the
// provider. Each host has its own netns (joined to ours by a veth), a private mount namespace
// (overlay copies of /etc and /var/lib; fresh /run, /root, /home, /tmp, /var/log; a sysfs of its
// own netns), its own hostname and its own sshd. See DESIGN.md "Testing against real hosts on one
// machine". Every command is an argv array; nothing from the caller reaches a shell string.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string;
  timeoutMs?: number;
}

export interface LabConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  hostKey: string;
}

export interface LabHost {
  name: string;
  index: number;
  netns: string;
  address: string;
  port: number;
  controllerAddress: string;
  hostKeyLine: string;
  hostKeyFingerprint: string;
  privateKey: string;
  /** Path (on the machine) of the lab client key, for `ssh -i`. */
  privateKeyPath: string;
  sshdLogPath: string;
  /** The hostname the host's UTS namespace reports (equal to `netns`). */
  hostname: string;
  /** Pids (in the machine's pid namespace) of the namespace holder and of sshd. */
  holderPid: number;
  sshdPid: number;
  uplink?: string;
  wanGateway?: string;
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  sshConnectionCount(): Promise<number>;
  connection(user?: string): LabConnection;
}

export interface LabWan {
  netns: string;
  address: string;
  holderPid: number;
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface Lab {
  name: string;
  /** Directory on the machine holding this lab's keys, logs and per-host state. */
  stateDir: string;
  hosts: LabHost[];
  wan?: LabWan;
  stop(): Promise<void>;
}

/** Users that every lab host has besides root; all accept the lab client key. */
export const LAB_USERS = {
  /** sudo without a password. */
  sudo: "hvsudo",
  /** sudo that asks for this user's password; also logs in with that password. */
  password: "hvpass",
  passwordSecret: "hvpass-Secret.1",
} as const;

export const LAB_STATE_ROOT = "/var/tmp/pulumi-hypervisor-lab";
export const LAB_WAN_ADDRESS = "198.19.255.1";
export const LAB_MAX_HOSTS = 50;
/** Highest host index: 198.19.255.0/24 is the WAN's own. */
export const LAB_MAX_INDEX = 250;

const LAB_NAME_RE = /^[a-z][a-z0-9-]{0,23}$/;
const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
const HOLDER_READY_TIMEOUT_MS = 20_000;
const SSHD_READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 2_000;

const LAB_ENV: NodeJS.ProcessEnv = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

// ---------------------------------------------------------------------------------------------
// Naming and addressing (pure)

/** Returns the short prefix of this lab's root-side interface names ("hv" + 6 hex digits). */
export function labInterfacePrefix(name: string): string {
  return "hv" + createHash("sha256").update(name).digest("hex").slice(0, 6);
}

/** Returns the names and addresses of host `index` (1-based) of lab `name`. */
export function labHostLayout(name: string, index: number) {
  return {
    index,
    name: `h${index}`,
    netns: `${name}-h${index}`,
    mgmtVeth: `${labInterfacePrefix(name)}m${index}`,
    controllerAddress: `198.18.${index}.1`,
    address: `198.18.${index}.2`,
    wanPeer: `to-h${index}`,
    wanGateway: `198.19.${index}.1`,
    wanAddress: `198.19.${index}.2`,
  };
}

function validateLabName(name: string): void {
  if (!LAB_NAME_RE.test(name)) {
    throw new Error(
      `lab name ${JSON.stringify(name)} is invalid: use 1-24 of [a-z0-9-], starting with a letter`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Local processes

export interface LocalRunOptions extends ExecOptions {
  /** Variables added to the lab's fixed environment (PATH, HOME, LANG). */
  env?: Record<string, string>;
}

/** Runs argv on the machine; resolves with its exit code (never rejects on a non-zero exit). */
export function runLocal(argv: readonly string[], opts: LocalRunOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error("runLocal: empty argv"));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const env = { ...LAB_ENV, ...opts.env };
    const child = spawn(file, args, { cwd: "/", env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    let exitCode: number | undefined;
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    // A command that exits before reading its stdin must not fail the call with EPIPE.
    child.stdin.on("error", () => undefined);
    const finish = (): void => {
      if (settled || exitCode === undefined) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({
        code: exitCode,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    };
    let drain: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      reject(
        new Error(
          `${quoteForMessage(argv)} timed out after ${timeoutMs} ms; stderr: ` +
            tail(Buffer.concat(err).toString("utf8")),
        ),
      );
    }, timeoutMs);
    child.on("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${quoteForMessage(argv)}: ${e.message}`));
    });
    child.on("exit", (code, signal) => {
      exitCode = code ?? 128 + (signal ? (osSignalNumber(signal) ?? 0) : 0);
      // A daemon the command started may hold the pipes open: give the output a moment, then go.
      drain = setTimeout(finish, 250);
    });
    child.on("close", finish);
    child.stdin.end(opts.stdin ?? "");
  });
}

function osSignalNumber(signal: NodeJS.Signals): number | undefined {
  return os.constants.signals[signal];
}

/** Runs argv on the machine and returns stdout; rejects with the command and its stderr. */
async function runOk(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await runLocal(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${quoteForMessage(argv)} exited ${r.code}: ${tail(r.stderr || r.stdout)}`);
  }
  return r.stdout;
}

function quoteForMessage(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(" ");
}

function tail(text: string, lines = 20): string {
  const t = text.trim();
  if (t === "") return "no output";
  return t.split("\n").slice(-lines).join("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Returns the start time of pid (clock ticks since boot), or undefined when it is gone. */
async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may contain spaces: fields start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return undefined; // exited, waiting for its parent to reap it
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Returns whether pid is a live (not zombie) process. */
export async function isProcessAlive(pid: number): Promise<boolean> {
  return (await processStartTime(pid)) !== undefined;
}

async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.access(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

const REQUIRED_PROGRAMS: ReadonlyArray<readonly [program: string, pkg: string]> = [
  ["sshd", "openssh-server"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
  ["ip", "iproute2"],
  ["bridge", "iproute2"],
  ["ss", "iproute2"],
  ["unshare", "util-linux"],
  ["nsenter", "util-linux"],
  ["mount", "mount"],
  ["umount", "mount"],
  ["hostname", "hostname"],
  ["useradd", "passwd"],
  ["socat", "socat"],
  ["usermod", "passwd"],
  ["chpasswd", "passwd"],
  ["sudo", "sudo"],
  ["perl", "perl-base"],
  ["sh", "dash"],
  ["sysctl", "procps"],
  ["ps", "procps"],
  ["fuser", "psmisc"],
  ["dnsmasq", "dnsmasq-base"],
  ["nft", "nftables"],
  ["iptables", "iptables"],
  ["busybox", "busybox-static"],
  ["cpio", "cpio"],
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["qemu-img", "qemu-utils"],
];

/** Returns the absolute path of program in the lab PATH, or undefined. */
async function findProgram(program: string): Promise<string | undefined> {
  for (const dir of (LAB_ENV.PATH ?? "").split(":")) {
    const candidate = path.join(dir, program);
    try {
      await fs.access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Throws one error listing everything the lab needs that this machine lacks. */
export async function checkLabPrerequisites(): Promise<void> {
  const problems: string[] = [];
  if (process.platform !== "linux")
    problems.push(`lab hosts need Linux, this is ${process.platform}`);
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    problems.push("lab hosts need root (network and mount namespaces)");
  }
  const missing: string[] = [];
  for (const [program, pkg] of REQUIRED_PROGRAMS) {
    if ((await findProgram(program)) === undefined) missing.push(`${program} (${pkg})`);
  }
  if (missing.length > 0) problems.push(`missing programs: ${missing.join(", ")}`);
  const boot = await fs.readdir("/boot").catch(() => [] as string[]);
  if (!boot.some((f) => f.startsWith("vmlinuz-"))) {
    problems.push("missing a guest kernel /boot/vmlinuz-* (linux-image-cloud-amd64)");
  }
  if (!(await pathExists("/usr/lib/openssh/sftp-server"))) {
    problems.push("missing /usr/lib/openssh/sftp-server (openssh-server)");
  }
  if (problems.length > 0) {
    throw new Error(
      `lab prerequisites are not met: ${problems.join("; ")}; run scripts/install-deps.sh`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// State file: what `stop` needs to find and kill from any process

interface HostState {
  name: string;
  index: number;
  netns: string;
  mgmtVeth: string;
  holderPid: number;
  holderStart: string;
  sshdPid: number;
  sshdStart: string;
}

interface WanState {
  netns: string;
  holderPid: number;
  holderStart: string;
}

interface LabState {
  name: string;
  prefix: string;
  hosts: HostState[];
  wan?: WanState;
}

function labStateDir(name: string): string {
  return path.join(LAB_STATE_ROOT, name);
}

let stateWrites = 0;

async function writeState(state: LabState): Promise<void> {
  const file = path.join(labStateDir(state.name), "lab.json");
  // Hosts start concurrently and each records itself: every write needs its own temp file.
  const temp = `${file}.${process.pid}.${++stateWrites}.tmp`;
  await fs.writeFile(temp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  await fs.rename(temp, file);
}

async function readState(name: string): Promise<LabState | undefined> {
  try {
    return JSON.parse(
      await fs.readFile(path.join(labStateDir(name), "lab.json"), "utf8"),
    ) as LabState;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Namespace holder: `sh` sets up the mount namespace, then execs a perl reaper that starts sshd.

// Runs as `sh -c HOLDER_SETUP sh REAPER STATE_DIR HOSTNAME KIND [sshd argv...]` inside the new
// mount and UTS namespaces, already in the host's netns. Its inputs are positional parameters only.
const HOLDER_SETUP = String.raw`
set -eu
R=$1 S=$2 HN=$3 KIND=$4
shift 4
# The inherited /sys belongs to the machine's netns; a fresh sysfs shows this netns's interfaces.
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
hostname "$HN"
mount --bind "$S/run" /run
mount --bind "$S/tmp" /tmp
if [ "$KIND" = host ]; then
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc.upper,workdir=$S/etc.work" /etc
  mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$S/var-lib.upper,workdir=$S/var-lib.work" /var/lib
  mount --bind "$S/root" /root
  mount --bind "$S/home" /home
  mount --bind "$S/log" /var/log
  printf '%s\n' "$HN" > /etc/hostname
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$HN" > /etc/hosts
  # "!" (locked) would make sshd without PAM refuse key logins too.
  usermod -p '*' root
  useradd -M -d /home/hvsudo -s /bin/bash -p '*' hvsudo
  useradd -M -d /home/hvpass -s /bin/bash hvpass
  printf '%s:%s\n' hvpass '${LAB_USERS.passwordSecret}' | chpasswd
  for u in hvsudo hvpass; do
    mkdir -m 700 "/home/$u" "/home/$u/.ssh"
    cp /root/.ssh/authorized_keys "/home/$u/.ssh/authorized_keys"
    chown -R "$u:$u" "/home/$u"
  done
  printf 'hvsudo ALL=(ALL:ALL) NOPASSWD: ALL\nhvpass ALL=(ALL:ALL) ALL\n' > /etc/sudoers.d/pulumi-hypervisor-lab
  chmod 440 /etc/sudoers.d/pulumi-hypervisor-lab
fi
cd /
exec perl -e "$R" -- "$S" "$@"
`;

// The holder's last stage: a child subreaper (like init on a real host) so that daemons started
// over SSH (dnsmasq, qemu -daemonize) are reaped when they exit instead of lingering as zombies.
// It starts sshd (if given) as its child, prints "ready <sshd pid>", and then only reaps.
const REAPER = String.raw`
use strict; use POSIX ();
$| = 1;
my %prctl = (x86_64 => 157, aarch64 => 167);
my $nr = $prctl{(POSIX::uname())[4]} // die "unknown architecture for prctl\n";
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
my $state = shift @ARGV;
my $child = 0;
if (@ARGV) {
  $child = fork() // die "fork: $!\n";
  if ($child == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', "$state/sshd.stderr";
    open STDERR, '>&', \*STDOUT;
    exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n";
  }
}
print "ready $child\n";
open STDIN, '<', '/dev/null'; open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
for (;;) { sleep 1 if wait() == -1 }
`;

interface HolderStarted {
  holderPid: number;
  childPid: number;
}

/** Starts a namespace holder in netns; resolves once its setup ran and its child (if any) forked. */
function startHolder(
  netns: string,
  stateDir: string,
  hostname: string,
  kind: "host" | "wan",
  childArgv: readonly string[],
): Promise<HolderStarted> {
  const argv = [
    "nsenter",
    `--net=/run/netns/${netns}`,
    "--",
    "unshare",
    "--mount",
    "--uts",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    HOLDER_SETUP,
    "sh",
    REAPER,
    stateDir,
    hostname,
    kind,
    ...childArgv,
  ];
  return new Promise((resolve, reject) => {
    // Detached: the holder outlives a CLI `up` and is not hit by the caller's Ctrl-C.
    const child = spawn(argv[0] ?? "nsenter", argv.slice(1), {
      cwd: "/",
      env: LAB_ENV,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let done = false;
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
      reject(new Error(`lab ${netns}: namespace holder ${why}: ${tail(err)}`));
    };
    const timer = setTimeout(
      () => fail(`did not get ready within ${HOLDER_READY_TIMEOUT_MS} ms`),
      HOLDER_READY_TIMEOUT_MS,
    );
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString("utf8");
      const m = /^ready (\d+)$/m.exec(out);
      if (m && !done && child.pid !== undefined) {
        done = true;
        clearTimeout(timer);
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        resolve({ holderPid: child.pid, childPid: Number(m[1]) });
      }
    });
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString("utf8");
    });
    child.on("error", (e) => fail(`could not start: ${e.message}`));
    child.on("exit", (code, signal) => fail(`exited (${signal ?? code}) during setup`));
  });
}

/** Runs argv inside the namespaces (net, mount, uts) that holderPid holds. */
function execIn(holderPid: number, argv: string[], opts?: ExecOptions): Promise<ExecResult> {
  return runLocal(["nsenter", "-t", String(holderPid), "-m", "-u", "-n", "--", ...argv], opts);
}

// ---------------------------------------------------------------------------------------------
// sshd

function renderSshdConfig(stateDir: string, address: string): string {
  // OpenSSH's default MaxStartups (10:30:100) and MaxSessions (10) are kept on purpose: real
  // hosts refuse bursts of connections and channels, and the provider must cope with that.
  return [
    `ListenAddress ${address}:22`,
    "AddressFamily inet",
    `HostKey ${stateDir}/ssh_host_ed25519_key`,
    "PidFile /run/sshd.pid",
    "PermitRootLogin yes",
    "PubkeyAuthentication yes",
    "PasswordAuthentication yes",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "AuthorizedKeysFile .ssh/authorized_keys",
    "LogLevel VERBOSE",
    "PrintMotd no",
    "PrintLastLog no",
    "X11Forwarding no",
    "Subsystem sftp /usr/lib/openssh/sftp-server",
    "",
  ].join("\n");
}

/** Resolves once something accepts TCP on address:port and sends an SSH banner. */
function probeSshBanner(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: address, port });
    let buf = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on("data", (b: Buffer) => {
      buf += b.toString("latin1");
      if (buf.startsWith("SSH-2.0-")) done(true);
    });
    sock.on("error", () => done(false));
    sock.on("close", () => done(false));
  });
}

async function waitForSshd(host: HostState, address: string, stateDir: string): Promise<void> {
  const deadline = Date.now() + SSHD_READY_TIMEOUT_MS;
  for (;;) {
    if (!(await isProcessAlive(host.sshdPid))) break;
    if (await probeSshBanner(address, 22, 1000)) return;
    if (Date.now() > deadline) break;
    await sleep(50);
  }
  const log = await fs.readFile(path.join(stateDir, "sshd.log"), "utf8").catch(() => "");
  const stderr = await fs.readFile(path.join(stateDir, "sshd.stderr"), "utf8").catch(() => "");
  const alive = await isProcessAlive(host.sshdPid);
  throw new Error(
    `lab ${host.netns}: sshd (pid ${host.sshdPid}, ${alive ? "running" : "exited"}) did not ` +
      `accept TCP on ${address}:22 within ${SSHD_READY_TIMEOUT_MS} ms; sshd log: ` +
      `${tail(log + stderr)}`,
  );
}

async function generateKey(file: string, comment: string): Promise<void> {
  await runOk(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
}

async function keyFingerprint(pubFile: string): Promise<string> {
  const out = await runOk(["ssh-keygen", "-l", "-E", "sha256", "-f", pubFile]);
  const fp = out.trim().split(/\s+/)[1];
  if (fp === undefined || !fp.startsWith("SHA256:")) {
    throw new Error(`ssh-keygen -lf ${pubFile} printed ${JSON.stringify(out)}`);
  }
  return fp;
}

function publicKeyLine(pubFileContent: string): string {
  const [type, key] = pubFileContent.trim().split(/\s+/);
  if (type === undefined || key === undefined) {
    throw new Error(`not an OpenSSH public key: ${JSON.stringify(pubFileContent)}`);
  }
  return `${type} ${key}`;
}

// ---------------------------------------------------------------------------------------------
// Start

export interface StartLabOptions {
  name: string;
  hosts: number;
  /** Adds the "<name>-wan" namespace as every host's default gateway. */
  wan?: boolean;
  /**
   * Index (and so addresses, 198.18.<index>.0/24) of the first host; default 1. Labs whose
   * index ranges do not overlap can run at the same time.
   */
  firstIndex?: number;
}

/** Returns a running lab of `hosts` hosts (and a WAN when asked), replacing a leftover one. */
export async function startLab(opts: StartLabOptions): Promise<Lab> {
  const { name } = opts;
  validateLabName(name);
  const first = opts.firstIndex ?? 1;
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > LAB_MAX_HOSTS) {
    throw new Error(`lab ${name}: hosts must be an integer from 1 to ${LAB_MAX_HOSTS}`);
  }
  if (!Number.isInteger(first) || first < 1 || first + opts.hosts - 1 > LAB_MAX_INDEX) {
    throw new Error(
      `lab ${name}: host indexes ${first}..${first + opts.hosts - 1} must lie in 1..${LAB_MAX_INDEX}`,
    );
  }
  await checkLabPrerequisites();
  await stopLab(name);
  const layouts = Array.from({ length: opts.hosts }, (_, i) => labHostLayout(name, first + i));
  await refuseAddressClash(
    name,
    layouts.map((l) => l.controllerAddress),
  );

  const dir = labStateDir(name);
  await fs.mkdir(LAB_STATE_ROOT, { recursive: true, mode: 0o700 });
  await fs.mkdir(dir, { mode: 0o700 });
  const state: LabState = { name, prefix: labInterfacePrefix(name), hosts: [] };
  await writeState(state);
  try {
    await startLabIn(state, layouts, opts.wan === true);
  } catch (e) {
    await stopLab(name).catch(() => undefined);
    throw e;
  }
  const lab = await attachLab(name);
  if (lab === undefined) throw new Error(`lab ${name}: state vanished right after start`);
  return lab;
}

async function refuseAddressClash(name: string, addresses: string[]): Promise<void> {
  const links = JSON.parse(await runOk(["ip", "-j", "-4", "addr", "show"])) as Array<{
    ifname?: string;
    addr_info?: Array<{ local?: string }>;
  }>;
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      if (a.local !== undefined && addresses.includes(a.local)) {
        const owner = await labOwningPrefix((link.ifname ?? "").replace(/m\d+$/, ""));
        throw new Error(
          `lab ${name}: ${a.local} is already on interface ${link.ifname ?? "?"}` +
            (owner ? ` of lab ${JSON.stringify(owner)}` : "") +
            "; host <i> of every lab uses 198.18.<i>.0/24: stop the other lab " +
            "(npx tsx test/lab/cli.ts down --name NAME), or start this one with a firstIndex " +
            "past the other's hosts",
        );
      }
    }
  }
}

async function labOwningPrefix(prefix: string): Promise<string | undefined> {
  for (const name of await fs.readdir(LAB_STATE_ROOT).catch(() => [] as string[])) {
    if (LAB_NAME_RE.test(name) && labInterfacePrefix(name) === prefix) return name;
  }
  return undefined;
}

async function startLabIn(
  state: LabState,
  layouts: Array<ReturnType<typeof labHostLayout>>,
  withWan: boolean,
): Promise<void> {
  const { name } = state;
  const dir = labStateDir(name);
  const sshd = (await findProgram("sshd")) ?? "/usr/sbin/sshd";
  const wanNetns = `${name}-wan`;

  // Per-host directories and keys first: they need no namespace.
  const clientKey = path.join(dir, "id_ed25519");
  await generateKey(clientKey, `pulumi-hypervisor-lab ${name}`);
  const clientPub = await fs.readFile(`${clientKey}.pub`, "utf8");
  await Promise.all(
    layouts.map(async (l) => {
      const hd = path.join(dir, l.name);
      for (const sub of ["etc.upper", "etc.work", "var-lib.upper", "var-lib.work", "home", "log"]) {
        await fs.mkdir(path.join(hd, sub), { recursive: true, mode: 0o755 });
      }
      await prepareRunAndTmp(hd);
      await fs.mkdir(path.join(hd, "root", ".ssh"), { recursive: true, mode: 0o700 });
      await fs.chmod(path.join(hd, "root"), 0o700);
      await fs.writeFile(path.join(hd, "root", ".ssh", "authorized_keys"), clientPub, {
        mode: 0o600,
      });
      await generateKey(path.join(hd, "ssh_host_ed25519_key"), `${l.netns}`);
      await fs.writeFile(path.join(hd, "sshd_config"), renderSshdConfig(hd, l.address), {
        mode: 0o600,
      });
      await fs.writeFile(path.join(hd, "sshd.log"), "", { mode: 0o600 });
    }),
  );

  // Namespaces and links. The state is written first so that a failed start can be cleaned up.
  const netnses = [...layouts.map((l) => l.netns), ...(withWan ? [wanNetns] : [])];
  await Promise.all(netnses.map((ns) => runOk(["ip", "netns", "add", ns])));
  const rootBatch: string[] = [];
  for (const l of layouts) {
    rootBatch.push(`link add ${l.mgmtVeth} type veth peer name mgmt0 netns ${l.netns}`);
    rootBatch.push(`addr add ${l.controllerAddress}/24 dev ${l.mgmtVeth}`);
    rootBatch.push(`link set ${l.mgmtVeth} up`);
    if (withWan) {
      rootBatch.push(
        `link add name wan0 netns ${l.netns} type veth peer name ${l.wanPeer} netns ${wanNetns}`,
      );
    }
  }
  await runOk(["ip", "-batch", "-"], { stdin: rootBatch.join("\n") + "\n" });
  if (withWan) {
    const wanBatch = ["link set lo up", `addr add ${LAB_WAN_ADDRESS}/32 dev lo`];
    for (const l of layouts) {
      wanBatch.push(`addr add ${l.wanGateway}/24 dev ${l.wanPeer}`);
      wanBatch.push(`link set ${l.wanPeer} up`);
    }
    await runOk(["ip", "-n", wanNetns, "-batch", "-"], { stdin: wanBatch.join("\n") + "\n" });
  }
  await Promise.all(
    layouts.map((l) => {
      const batch = ["link set lo up", `addr add ${l.address}/24 dev mgmt0`, "link set mgmt0 up"];
      if (withWan) {
        batch.push(`addr add ${l.wanAddress}/24 dev wan0`, "link set wan0 up");
        batch.push(`route add default via ${l.wanGateway} dev wan0`);
      }
      return runOk(["ip", "-n", l.netns, "-batch", "-"], { stdin: batch.join("\n") + "\n" });
    }),
  );

  if (withWan) {
    const wd = path.join(dir, "wan");
    await prepareRunAndTmp(wd);
    const h = await startHolder(wanNetns, wd, wanNetns, "wan", []);
    state.wan = {
      netns: wanNetns,
      holderPid: h.holderPid,
      holderStart: (await processStartTime(h.holderPid)) ?? "",
    };
    await writeState(state);
  }

  const started = await Promise.all(
    layouts.map(async (l) => {
      const hd = path.join(dir, l.name);
      const h = await startHolder(l.netns, hd, l.netns, "host", [
        sshd,
        "-D",
        "-f",
        path.join(hd, "sshd_config"),
        "-E",
        path.join(hd, "sshd.log"),
      ]);
      const host: HostState = {
        name: l.name,
        index: l.index,
        netns: l.netns,
        mgmtVeth: l.mgmtVeth,
        holderPid: h.holderPid,
        holderStart: (await processStartTime(h.holderPid)) ?? "",
        sshdPid: h.childPid,
        sshdStart: (await processStartTime(h.childPid)) ?? "",
      };
      state.hosts.push(host);
      await writeState(state);
      return { host, layout: l };
    }),
  );
  state.hosts.sort((a, b) => a.index - b.index);
  await writeState(state);
  await Promise.all(
    started.map(({ host, layout }) =>
      waitForSshd(host, layout.address, path.join(dir, layout.name)),
    ),
  );
}

async function prepareRunAndTmp(hd: string): Promise<void> {
  await fs.mkdir(path.join(hd, "run", "sshd"), { recursive: true, mode: 0o755 });
  await fs.mkdir(path.join(hd, "run", "lock"), { recursive: true, mode: 0o1777 });
  await fs.mkdir(path.join(hd, "tmp"), { recursive: true });
  await fs.chmod(path.join(hd, "run"), 0o755);
  await fs.chmod(path.join(hd, "run", "sshd"), 0o755);
  await fs.chmod(path.join(hd, "run", "lock"), 0o1777);
  await fs.chmod(path.join(hd, "tmp"), 0o1777);
}

// ---------------------------------------------------------------------------------------------
// Attach: a Lab object for a running lab, from its state file

/** Returns the running lab of that name (started by any process), or undefined. */
export async function attachLab(name: string): Promise<Lab | undefined> {
  validateLabName(name);
  const state = await readState(name);
  if (state === undefined) return undefined;
  const dir = labStateDir(name);
  const privateKeyPath = path.join(dir, "id_ed25519");
  const privateKey = await fs.readFile(privateKeyPath, "utf8");
  const hosts: LabHost[] = [];
  for (const h of state.hosts) {
    const l = labHostLayout(name, h.index);
    const hd = path.join(dir, h.name);
    const hostKeyLine = publicKeyLine(
      await fs.readFile(path.join(hd, "ssh_host_ed25519_key.pub"), "utf8"),
    );
    const hostKeyFingerprint = await keyFingerprint(path.join(hd, "ssh_host_ed25519_key.pub"));
    const sshdLogPath = path.join(hd, "sshd.log");
    const host: LabHost = {
      name: h.name,
      index: h.index,
      netns: h.netns,
      address: l.address,
      port: 22,
      controllerAddress: l.controllerAddress,
      hostKeyLine,
      hostKeyFingerprint,
      privateKey,
      privateKeyPath,
      sshdLogPath,
      hostname: h.netns,
      holderPid: h.holderPid,
      sshdPid: h.sshdPid,
      exec: (argv, opts) => execIn(h.holderPid, argv, opts),
      sshConnectionCount: async () => {
        const log = await fs.readFile(sshdLogPath, "utf8");
        return log.split("\n").filter((line) => /\bConnection from \d/.test(line)).length;
      },
      connection: (user = "root") => ({
        host: l.address,
        port: 22,
        user,
        privateKey,
        hostKey: hostKeyLine,
      }),
    };
    if (state.wan !== undefined) {
      host.uplink = "wan0";
      host.wanGateway = l.wanGateway;
    }
    hosts.push(host);
  }
  const lab: Lab = { name, stateDir: dir, hosts, stop: () => stopLab(name) };
  if (state.wan !== undefined) {
    const wan = state.wan;
    lab.wan = {
      netns: wan.netns,
      address: LAB_WAN_ADDRESS,
      holderPid: wan.holderPid,
      exec: (argv, opts) => execIn(wan.holderPid, argv, opts),
    };
  }
  return lab;
}

/** Returns the names of labs that have a state directory on this machine. */
export async function listLabs(): Promise<string[]> {
  const names = await fs.readdir(LAB_STATE_ROOT).catch(() => [] as string[]);
  return names.filter((n) => LAB_NAME_RE.test(n)).sort();
}

// ---------------------------------------------------------------------------------------------
// Stop

/** Stops lab `name`: its processes, namespaces, veths and state dir. Succeeds when it is gone. */
export async function stopLab(name: string): Promise<void> {
  validateLabName(name);
  const state = await readState(name);
  const prefix = labInterfacePrefix(name);
  const nsRe = new RegExp(`^${name}-(h\\d+|wan)$`);
  const listed = (await runOk(["ip", "netns", "list"]))
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((ns) => nsRe.test(ns));
  const netnses = new Set<string>(listed);

  // Holders verified by start time (a recorded pid may have been reused by now).
  const holders: number[] = [];
  const recorded: number[] = [];
  for (const h of state?.hosts ?? []) {
    if ((await processStartTime(h.holderPid)) === h.holderStart) holders.push(h.holderPid);
    if ((await processStartTime(h.sshdPid)) === h.sshdStart) recorded.push(h.sshdPid);
  }
  if (state?.wan && (await processStartTime(state.wan.holderPid)) === state.wan.holderStart) {
    holders.push(state.wan.holderPid);
  }

  // Namespace identities: every process in one of them belongs to the lab.
  const nsIds = new Set<string>();
  for (const ns of netnses) {
    try {
      const st = await fs.stat(`/run/netns/${ns}`);
      nsIds.add(`net:[${st.ino}]`);
    } catch {
      // already gone
    }
  }
  for (const pid of holders) {
    for (const kind of ["net", "mnt"]) {
      const id = await fs.readlink(`/proc/${pid}/ns/${kind}`).catch(() => undefined);
      if (id !== undefined) nsIds.add(id);
    }
  }

  // Never the machine's own namespaces, whatever a stale state file says.
  for (const kind of ["net", "mnt"]) {
    nsIds.delete(await fs.readlink(`/proc/self/ns/${kind}`));
    nsIds.delete(await fs.readlink(`/proc/1/ns/${kind}`).catch(() => ""));
  }

  // Everything but the holders first, so the holders (subreapers) reap what they hold; then them.
  for (let round = 0; round < 5; round++) {
    const inside = (await processesInNamespaces(nsIds)).filter((p) => !holders.includes(p));
    const victims = [...new Set([...inside, ...recorded])];
    if (victims.length === 0) break;
    await terminate(victims);
    recorded.length = 0;
  }
  await terminate(holders);
  const stragglers = await processesInNamespaces(nsIds);
  if (stragglers.length > 0) await terminate(stragglers);

  // Deleting the root-side veth removes both ends at once; netns deletion alone is asynchronous.
  const links = JSON.parse(await runOk(["ip", "-j", "link", "show"])) as Array<{ ifname?: string }>;
  const vethRe = new RegExp(`^${prefix}m\\d+$`);
  for (const link of links) {
    if (link.ifname !== undefined && vethRe.test(link.ifname)) {
      await runLocal(["ip", "link", "del", link.ifname]);
    }
  }
  for (const ns of netnses) {
    const r = await runLocal(["ip", "netns", "del", ns]);
    if (r.code !== 0 && (await pathExists(`/run/netns/${ns}`))) {
      throw new Error(`lab ${name}: ip netns del ${ns} exited ${r.code}: ${tail(r.stderr)}`);
    }
  }
  await fs.rm(labStateDir(name), { recursive: true, force: true });
}

/** Returns the pids of live processes whose net or mount namespace is one of ids. */
async function processesInNamespaces(ids: Set<string>): Promise<number[]> {
  if (ids.size === 0) return [];
  const found: number[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    for (const kind of ["net", "mnt"]) {
      const id = await fs.readlink(`/proc/${pid}/ns/${kind}`).catch(() => undefined);
      if (id !== undefined && ids.has(id)) {
        found.push(pid);
        break;
      }
    }
  }
  return found;
}

/** Sends SIGTERM, then SIGKILL after a grace period; resolves when all are gone or zombies. */
async function terminate(pids: number[]): Promise<void> {
  const live = async (): Promise<number[]> => {
    const out: number[] = [];
    for (const p of pids) if (await isProcessAlive(p)) out.push(p);
    return out;
  };
  const signal = (pidsNow: number[], sig: NodeJS.Signals): void => {
    for (const p of pidsNow) {
      try {
        process.kill(p, sig);
      } catch {
        // already gone
      }
    }
  };
  signal(await live(), "SIGTERM");
  const deadline = Date.now() + STOP_GRACE_MS;
  while (Date.now() < deadline) {
    if ((await live()).length === 0) return;
    await sleep(25);
  }
  signal(await live(), "SIGKILL");
  const killDeadline = Date.now() + STOP_GRACE_MS;
  while (Date.now() < killDeadline) {
    if ((await live()).length === 0) return;
    await sleep(25);
  }
  throw new Error(`processes ${(await live()).join(", ")} survived SIGKILL`);
}
