// What every booted lab host offers (a systemd-nspawn container or a QEMU virtual machine of the
// same root), and the pieces both kinds share: names, the client key, state files, reboot over SSH.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { UPLINK } from "./identity";
import { ensureKeyPair, type KeyPair } from "./keys";
import { whichProgram, type ExecOptions, type ExecResult } from "./run";
import {
  BOOTED_STATE_ROOT,
  hostStateDir,
  slotLayout,
  takeSlot,
  type SideLink,
  type SideLinkKind,
  type Slot,
} from "./slots";
import { runSsh, waitForSshCommand, type SshTarget } from "./ssh";

export type HostKind = "nspawn" | "vm";

export interface BootedHost {
  name: string;
  kind: HostKind;
  /** The host's uplink address, where its sshd listens. */
  address: string;
  port: number;
  user: "root";
  /** The host's sshd key, "ssh-ed25519 AAAA…": stable across reboots. */
  hostKey: string;
  /** The lab client key (OpenSSH PEM), authorized for root on every host. */
  privateKey: string;
  privateKeyPath: string;
  /** A known_hosts file holding only this host's key, for `ssh -o UserKnownHostsFile=`. */
  knownHostsPath: string;
  /** The machine's end of the host's link (veth or tap) and its address. */
  outsideInterface: string;
  outsideAddress: string;
  /** The host's uplink, configured by ifupdown from /etc/network/interfaces.d. */
  uplink: string;
  /** The WAN link, when started with links ["wan"]: the host's default route, NAT's way out. */
  wan?: SideLink;
  /** The second NIC (eth1, ifupdown-owned), when started with links ["nic"]. */
  nic?: SideLink;
  stateDir: string;
  /** Milliseconds from the start call to the first successful SSH command. */
  sshAfterStartMs: number;
  /** Runs argv on the host (nsenter for containers, SSH for virtual machines). */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Runs argv on the host over SSH, verifying its host key. */
  ssh(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Returns the milliseconds until SSH answered. */
  waitForSsh(timeoutMs?: number): Promise<number>;
  /** Runs `systemctl reboot` on the host; returns the milliseconds until SSH answered again. */
  reboot(timeoutMs?: number): Promise<number>;
  /** Powers the host off and removes everything of it (disk, keys, mounts, links, slot). */
  stop(): Promise<void>;
  /** The connection the provider uses for this host. */
  connection(): { host: string; port: number; user: string; privateKey: string; hostKey: string };
}

/** The record a host keeps in its state directory. */
export interface HostRecord {
  name: string;
  kind: HostKind;
  slot: number;
  rootHash: string;
  /** Pid of the process that keeps the host running (the nspawn supervisor or QEMU). */
  pid?: number;
  /** Pid of the process the host belongs to (a test run): once it is gone, the host is litter. */
  owner?: number;
  /** The side links the host was started with. */
  links?: SideLinkKind[];
}

export interface StartOptions {
  /** Lines of progress (root build, boot); default: none. */
  log?: (line: string) => void;
  /** A pid (a test run's own) after whose end stopOrphanedHosts may remove the host. */
  owner?: number;
  /**
   * Side links beyond the uplink (containers only): "wan" adds wan0 with the host's default route
   * to the machine (an upstream for NAT that the test process reaches directly), "nic" adds eth1,
   * a second NIC owned by ifupdown. Default: none.
   */
  links?: SideLinkKind[];
}

/** Returns the side links of slot that links names, in a fixed order. */
export function sideLinksOf(slot: Slot, links: readonly SideLinkKind[] | undefined) {
  return {
    ...(links?.includes("wan") === true ? { wan: slot.wan } : {}),
    ...(links?.includes("nic") === true ? { nic: slot.nic } : {}),
  };
}

const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
// Created by `systemctl reboot` callers and gone after the reboot: /run is a fresh tmpfs.
const REBOOT_MARKER = "/run/booted-lab-reboot-pending";

/** Throws unless name can be a hostname and a file name. */
export function validateHostName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new Error(
      `booted lab host name ${JSON.stringify(name)} is invalid: use 1-31 of [a-z0-9-], ` +
        `starting with a letter`,
    );
  }
}

/** Throws naming every program (and its Debian package) the machine lacks. */
export async function requirePrograms(programs: ReadonlyArray<[string, string]>): Promise<void> {
  const missing: string[] = [];
  for (const [program, pkg] of programs) {
    if ((await whichProgram(program)) === undefined) missing.push(`${program} (${pkg})`);
  }
  if (missing.length > 0) {
    throw new Error(
      `booted lab: missing on this machine: ${missing.join(", ")}; ` +
        `install with: bash scripts/install-deps.sh`,
    );
  }
}

/** Returns the lab client key pair, generated once per machine. */
export function ensureClientKey(): Promise<KeyPair> {
  return ensureKeyPair(path.join(BOOTED_STATE_ROOT, "client", "id_ed25519"), "booted-lab-client");
}

/** Returns the record of host name, or undefined when it has no state directory. */
export async function readHostRecord(name: string): Promise<HostRecord | undefined> {
  const text = await fs
    .readFile(path.join(hostStateDir(name), "host.json"), "utf8")
    .catch(() => "");
  return text === "" ? undefined : (JSON.parse(text) as HostRecord);
}

/** Writes the record of a host into its state directory. */
export async function writeHostRecord(record: HostRecord): Promise<void> {
  const file = path.join(hostStateDir(record.name), "host.json");
  await fs.writeFile(`${file}.tmp`, JSON.stringify(record, null, 2) + "\n");
  await fs.rename(`${file}.tmp`, file);
}

/** Returns the names of the hosts that have a state directory. */
export async function listHostNames(): Promise<string[]> {
  return (await fs.readdir(path.join(BOOTED_STATE_ROOT, "hosts")).catch(() => [])).sort();
}

/** Writes a known_hosts file pinning hostKey for address; returns its path. */
export async function writeKnownHosts(stateDir: string, address: string, hostKey: string) {
  const file = path.join(stateDir, "known_hosts");
  await fs.writeFile(file, `${address} ${hostKey}\n`);
  return file;
}

/** Returns the milliseconds from `systemctl reboot` until SSH answered on the new boot. */
export async function rebootOverSsh(
  target: SshTarget,
  timeoutMs: number,
  describe: () => Promise<string>,
): Promise<number> {
  const started = Date.now();
  const r = await runSsh(target, ["sh", "-c", `touch ${REBOOT_MARKER} && systemctl reboot`], {
    timeoutMs: 30_000,
  });
  // 255: the connection dropped because the host went down first, which is fine.
  if (r.code !== 0 && r.code !== 255) {
    throw new Error(
      `systemctl reboot on ${target.address} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`,
    );
  }
  const left = timeoutMs - (Date.now() - started);
  await waitForSshCommand(target, left, ["test", "!", "-e", REBOOT_MARKER], describe);
  return Date.now() - started;
}

/** What differs between a container and a virtual machine behind the same SSH-reached host. */
export interface HostParts {
  /** Milliseconds `waitForSsh` and `reboot` wait by default. */
  readonly sshStartTimeoutMs: number;
  readonly rebootTimeoutMs: number;
  /** Returns what a failed wait for SSH reports: the tails of the host's logs. */
  describe(): Promise<string>;
  /** Runs argv on the host without SSH; over SSH when absent. */
  exec?: BootedHost["exec"];
  stop(): Promise<void>;
}

/** Returns the host of a record: its keys, known_hosts and SSH target, with `parts` for the rest. */
export async function makeBootedHost(
  record: HostRecord,
  slot: Slot,
  parts: HostParts,
): Promise<BootedHost> {
  const dir = hostStateDir(record.name);
  const client = await ensureClientKey();
  const hostKey = await ensureKeyPair(
    path.join(dir, "ssh_host_ed25519_key"),
    `root@${record.name}`,
  );
  const knownHostsPath = await writeKnownHosts(dir, slot.address, hostKey.publicKey);
  const target: SshTarget = {
    address: slot.address,
    port: 22,
    user: "root",
    privateKeyPath: client.privateKeyPath,
    knownHostsPath,
  };
  const ssh: BootedHost["ssh"] = (argv, opts) => runSsh(target, argv, opts);
  return {
    name: record.name,
    kind: record.kind,
    address: slot.address,
    port: 22,
    user: "root",
    hostKey: hostKey.publicKey,
    privateKey: client.privateKey,
    privateKeyPath: client.privateKeyPath,
    knownHostsPath,
    outsideInterface: slot.outsideInterface,
    outsideAddress: slot.outsideAddress,
    uplink: UPLINK,
    ...sideLinksOf(slot, record.links),
    stateDir: dir,
    sshAfterStartMs: 0,
    exec: parts.exec ?? ssh,
    ssh,
    waitForSsh: (timeoutMs = parts.sshStartTimeoutMs) =>
      waitForSshCommand(target, timeoutMs, ["true"], () => parts.describe()),
    reboot: (timeoutMs = parts.rebootTimeoutMs) =>
      rebootOverSsh(target, timeoutMs, () => parts.describe()),
    stop: () => parts.stop(),
    connection: () => ({
      host: slot.address,
      port: 22,
      user: "root",
      privateKey: client.privateKey,
      hostKey: hostKey.publicKey,
    }),
  };
}

/**
 * Returns the record and slot of a host about to start: `existing`'s slot (a stopped container
 * keeps its disk), else a new one; the record is written, and a new state directory is removed
 * again when this fails.
 */
export async function claimHostSlot(
  name: string,
  kind: HostKind,
  rootHash: string,
  opts: StartOptions,
  existing?: HostRecord,
): Promise<{ record: HostRecord; slot: Slot }> {
  const dir = hostStateDir(name);
  // The directory comes first: a slot whose holder has no directory counts as free.
  await fs.mkdir(dir, { recursive: true });
  try {
    const slot = existing === undefined ? await takeSlot(name) : slotLayout(existing.slot);
    const record: HostRecord = { name, kind, slot: slot.index, rootHash };
    if (opts.owner !== undefined) record.owner = opts.owner;
    if (opts.links !== undefined && opts.links.length > 0) record.links = [...opts.links];
    await writeHostRecord(record);
    return { record, slot };
  } catch (e) {
    if (existing === undefined) await fs.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Returns host once `boot` started it (resolving with the pid that keeps it running, recorded)
 * and SSH answered within timeoutMs; stops it (removing everything of it) when either fails.
 */
export async function bootHost(
  host: BootedHost,
  record: HostRecord,
  timeoutMs: number,
  boot: (started: number) => Promise<number>,
): Promise<BootedHost> {
  try {
    const started = Date.now();
    const pid = await boot(started);
    await writeHostRecord({ ...record, pid });
    host.sshAfterStartMs = Date.now() - started + (await host.waitForSsh(timeoutMs));
    return host;
  } catch (e) {
    await host.stop().catch(() => undefined);
    throw e;
  }
}
