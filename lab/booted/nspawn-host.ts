// A booted lab host as a systemd-nspawn container: systemd is PID 1, the disk is an overlay of the
// cached root that persists across the host's reboots, and every boot gets a fresh network
// namespace, so a reboot loses kernel state exactly as a real one does.
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  bootHost,
  claimHostSlot,
  ensureClientKey,
  makeBootedHost,
  readHostRecord,
  requirePrograms,
  sideLinksOf,
  validateHostName,
  type BootedHost,
  type HostRecord,
  type StartOptions,
} from "./booted-host";
import { UPLINK, writeHostIdentity } from "./identity";
import { ensureKeyPair } from "./keys";
import { mountOverlay, removeHostTree } from "./mounts";
import { statFields } from "../exec";
import { ensureRoot } from "./root";
import { exists, isAlive, LAB_ENV, runLocal, sleep, tailOf, type ExecOptions } from "./run";
import { hostStateDir, releaseSlot, slotLayout, type Slot } from "./slots";

const SSH_START_TIMEOUT_MS = 60_000;
const REBOOT_TIMEOUT_MS = 60_000;
const POWEROFF_GRACE_MS = 15_000;

const PROGRAMS: ReadonlyArray<[string, string]> = [
  ["systemd-nspawn", "systemd-container"],
  ["nsenter", "util-linux"],
  ["mount", "mount"],
  ["ip", "iproute2"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
];

/** Returns a running booted host named name (its hostname too), answering SSH as root. */
export async function startHost(name: string, opts: StartOptions = {}): Promise<BootedHost> {
  validateHostName(name);
  await requirePrograms(PROGRAMS);
  const root = await ensureRoot(opts.log);
  if (root.buildMs > 0) opts.log?.(`booted lab: built the root in ${root.buildMs} ms`);
  const dir = hostStateDir(name);
  const existing = await readHostRecord(name);
  if (existing !== undefined && existing.kind !== "nspawn") {
    throw new Error(`booted lab: host ${name} exists as a ${existing.kind}; stop it first`);
  }
  if (existing?.pid !== undefined && (await isAlive(existing.pid))) {
    throw new Error(`booted lab: host ${name} is already running (supervisor pid ${existing.pid})`);
  }
  if (existing !== undefined && existing.rootHash !== root.hash) {
    throw new Error(
      `booted lab: host ${name} was made from root ${existing.rootHash}, the recipe now builds ` +
        `${root.hash}; stop it (removing its disk) first`,
    );
  }
  const { record, slot } = await claimHostSlot(name, "nspawn", root.hash, opts, existing);
  const host = await makeHost(record, slot);
  return bootHost(host, record, SSH_START_TIMEOUT_MS, async () => {
    const merged = path.join(dir, "root");
    await mountOverlay(root.dir, path.join(dir, "upper"), path.join(dir, "work"), merged);
    const client = await ensureClientKey();
    const hostKey = await ensureKeyPair(path.join(dir, "ssh_host_ed25519_key"), `root@${name}`);
    await writeHostIdentity(merged, {
      hostname: name,
      hostKeyPath: hostKey.privateKeyPath,
      clientPublicKey: client.publicKey,
      address: slot.address,
      prefixLength: slot.prefixLength,
      ...sideLinksOf(slot, record.links),
    });
    const argv = await nspawnArgv(name, merged, slot, record.links);
    return spawnSupervisor(dir, slot, record.links, argv);
  });
}

/** Returns host name as another process started it, or undefined when it has no state. */
export async function attachHost(name: string): Promise<BootedHost | undefined> {
  const record = await readHostRecord(name);
  if (record?.kind !== "nspawn") return undefined;
  return makeHost(record, slotLayout(record.slot));
}

async function nspawnArgv(
  name: string,
  merged: string,
  slot: Slot,
  links: HostRecord["links"],
): Promise<string[]> {
  const side = Object.values(sideLinksOf(slot, links));
  const argv = [
    "systemd-nspawn",
    "--boot",
    `--directory=${merged}`,
    `--machine=${name}`,
    "--private-network",
    `--network-veth-extra=${slot.outsideInterface}:${UPLINK}`,
    ...side.map((l) => `--network-veth-extra=${l.outsideInterface}:${l.interface}`),
    // This machine's PID 1 is not systemd: nspawn cannot register with machined or ask for a scope.
    "--register=no",
    "--keep-unit",
    "--link-journal=no",
    "--resolv-conf=off",
    "--timezone=off",
    "--settings=no",
    "--console=read-only",
  ];
  // Guests on the host need taps, which QEMU and `ip tuntap` open through /dev/net/tun.
  if (await exists("/dev/net/tun")) argv.push("--bind=/dev/net/tun");
  return argv;
}

async function spawnSupervisor(
  dir: string,
  slot: Slot,
  links: HostRecord["links"],
  nspawn: string[],
): Promise<number> {
  const side = Object.values(sideLinksOf(slot, links));
  const out = await fs.open(path.join(dir, "console.log"), "a");
  try {
    const child = spawn(
      "bash",
      [
        path.join(__dirname, "supervise.sh"),
        dir,
        slot.outsideInterface,
        `${slot.outsideAddress}/${slot.prefixLength}`,
        ...side.flatMap((l) => [l.outsideInterface, `${l.outsideAddress}/${l.prefixLength}`]),
        "--",
        ...nspawn,
      ],
      // Its own session: the host outlives the process that started it (npm run lab, the CLI).
      { cwd: "/", env: LAB_ENV, detached: true, stdio: ["ignore", out.fd, out.fd] },
    );
    const pid = child.pid;
    if (pid === undefined) throw new Error("booted lab: could not start the nspawn supervisor");
    child.unref();
    return pid;
  } finally {
    await out.close();
  }
}

// The container's init: the child of systemd-nspawn that lives in another pid namespace.
async function findContainerInit(dir: string): Promise<number | undefined> {
  const nspawnPid = Number(
    (await fs.readFile(path.join(dir, "nspawn.pid"), "utf8").catch(() => "")).trim(),
  );
  if (!Number.isInteger(nspawnPid) || nspawnPid <= 0) return undefined;
  const ownPidNs = await fs.readlink("/proc/self/ns/pid");
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const ppid = Number(statFields(stat)[1]);
    if (ppid !== nspawnPid) continue;
    const ns = await fs.readlink(`/proc/${entry}/ns/pid`).catch(() => ownPidNs);
    if (ns !== ownPidNs) return Number(entry);
  }
  return undefined;
}

function makeHost(record: HostRecord, slot: Slot): Promise<BootedHost> {
  const dir = hostStateDir(record.name);
  return makeBootedHost(record, slot, {
    sshStartTimeoutMs: SSH_START_TIMEOUT_MS,
    rebootTimeoutMs: REBOOT_TIMEOUT_MS,
    describe: async () => {
      const consoleLog = await fs.readFile(path.join(dir, "console.log"), "utf8").catch(() => "");
      const boots = await fs.readFile(path.join(dir, "boots.log"), "utf8").catch(() => "");
      return `host ${record.name} boots: ${tailOf(boots, 4)}; console: ${tailOf(consoleLog, 10)}`;
    },
    exec: async (argv: readonly string[], opts?: ExecOptions) => {
      const init = await findContainerInit(dir);
      if (init === undefined) throw new Error(`booted lab: host ${record.name} is not running`);
      const enter = ["nsenter", "-t", String(init), "-m", "-u", "-i", "-n", "-p", "-r", "-w"];
      return runLocal([...enter, "--", ...argv], opts);
    },
    stop: () => stopHost(record, slot),
  });
}

// SIGTERM to the supervisor reaches nspawn, which powers the container off (SIGRTMIN+3 to its
// init); whatever is still alive after the grace period is killed.
async function stopHost(record: HostRecord, slot: Slot): Promise<void> {
  const dir = hostStateDir(record.name);
  const current = (await readHostRecord(record.name)) ?? record;
  const nspawnPid = Number(
    (await fs.readFile(path.join(dir, "nspawn.pid"), "utf8").catch(() => "")).trim(),
  );
  const pids = [current.pid, nspawnPid].filter(
    (p): p is number => p !== undefined && Number.isInteger(p) && p > 0,
  );
  if (current.pid !== undefined && (await isAlive(current.pid))) {
    process.kill(current.pid, "SIGTERM");
  }
  const deadline = Date.now() + POWEROFF_GRACE_MS;
  while (Date.now() < deadline && (await anyAlive(pids))) await sleep(100);
  for (const pid of pids) {
    if (await isAlive(pid)) process.kill(pid, "SIGKILL");
  }
  while (await anyAlive(pids)) await sleep(50);
  // The veths go with the container's network namespace; a leftover one would block the slot.
  for (const ifname of [
    slot.outsideInterface,
    slot.wan.outsideInterface,
    slot.nic.outsideInterface,
  ]) {
    await runLocal(["ip", "link", "del", ifname]);
  }
  await removeHostTree(dir);
  await releaseSlot(slot.index, record.name);
}

async function anyAlive(pids: number[]): Promise<boolean> {
  for (const pid of pids) if (await isAlive(pid)) return true;
  return false;
}
