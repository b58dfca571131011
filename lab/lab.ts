// Lab hosts: Linux network namespaces on this machine that look like real hypervisor hosts to the
// provider. Each host has its own netns (joined to ours by a veth), a private mount namespace
// (overlay copies of /etc and /var/lib; fresh /run, /root, /home, /tmp, /var/log; a sysfs of its
// own netns), its own hostname and its own sshd. Every command is an argv array; nothing from the
// caller reaches a shell string. Host indices (and so addresses) come from the allocator, so labs
// can run side by side.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { allocateIndices, holdIndices } from "./allocate";
import { findProgram, processStartTime, type ExecOptions, type ExecResult } from "./exec";
import { execIn, startHolder } from "./holder";
import {
  LAB_MAX_HOSTS,
  LAB_MAX_INDEX,
  LAB_NAME_RE,
  LAB_STATE_ROOT,
  LAB_WAN_ADDRESS,
  labGuestNet,
  labHostLayout,
  labInterfacePrefix,
  validateLabName,
  type LabHostLayout,
} from "./layout";
import { prepareHostDirs, prepareTmp } from "./mounts";
import { checkLabPrerequisites } from "./prerequisites";
import { generateKey, keyFingerprint, publicKeyLine, renderSshdConfig, waitForSshd } from "./sshd";
import { labStateDir, readState, writeState, type HostState, type LabState } from "./state";
import { stopLab } from "./stop";
import { wireLab } from "./wan";

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
  /** With a WAN: the uplink interface ("wan0"), its address and the WAN's side of it. */
  uplink?: string;
  wanAddress?: string;
  wanGateway?: string;
  /** Returns the first three octets of guest network n inside this host ("198.18.128"). */
  guestNet(n: number): string;
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

export interface StartLabOptions {
  name: string;
  hosts: number;
  /** Adds the "<name>-wan" namespace as every host's default gateway. */
  wan?: boolean;
  /**
   * Wants host indices firstIndex.. (addresses 198.18.<index>.0/24) instead of allocated ones, for a
   * lab whose addresses stay the same between runs; fails when another lab holds one of them.
   */
  firstIndex?: number;
}

/** Returns a running lab of `hosts` hosts (and a WAN when asked), replacing a leftover one. */
export async function startLab(opts: StartLabOptions): Promise<Lab> {
  const { name } = opts;
  validateLabName(name);
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > LAB_MAX_HOSTS) {
    throw new Error(`lab ${name}: hosts must be an integer from 1 to ${LAB_MAX_HOSTS}`);
  }
  const first = opts.firstIndex;
  if (
    first !== undefined &&
    (!Number.isInteger(first) || first < 1 || first + opts.hosts - 1 > LAB_MAX_INDEX)
  ) {
    throw new Error(
      `lab ${name}: host indexes ${first}..${first + opts.hosts - 1} must lie in 1..${LAB_MAX_INDEX}`,
    );
  }
  await checkLabPrerequisites();
  await stopLab(name);
  const indices = await allocateIndices(name, opts.hosts, first !== undefined ? { first } : {});
  const layouts = indices.map((i) => labHostLayout(name, i));

  const dir = labStateDir(name);
  try {
    await fs.mkdir(LAB_STATE_ROOT, { recursive: true, mode: 0o700 });
    await fs.mkdir(dir, { mode: 0o700 });
    const state: LabState = { name, prefix: labInterfacePrefix(name), hosts: [] };
    await writeState(state);
    await startLabIn(state, layouts, opts.wan === true);
    const holders = [
      ...state.hosts.map((h) => h.holderPid),
      ...(state.wan ? [state.wan.holderPid] : []),
    ];
    await holdIndices(name, indices, holders);
  } catch (e) {
    await stopLab(name).catch(() => undefined);
    throw e;
  }
  const lab = await attachLab(name);
  if (lab === undefined) throw new Error(`lab ${name}: state vanished right after start`);
  return lab;
}

async function startLabIn(
  state: LabState,
  layouts: LabHostLayout[],
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
      await prepareHostDirs(hd, clientPub);
      await generateKey(path.join(hd, "ssh_host_ed25519_key"), `${l.netns}`);
      await fs.writeFile(path.join(hd, "sshd_config"), renderSshdConfig(hd, l.address), {
        mode: 0o600,
      });
      await fs.writeFile(path.join(hd, "sshd.log"), "", { mode: 0o600 });
    }),
  );

  await wireLab(layouts, withWan ? wanNetns : undefined);

  if (withWan) {
    const wd = path.join(dir, "wan");
    await prepareTmp(wd);
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
      guestNet: labGuestNet,
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
      host.wanAddress = l.wanAddress;
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
