// Stopping a lab: every process in its namespaces (the holders last, so they reap the rest), its
// veths and namespaces, its state directory and its host-index leases. Works from any process and
// for a lab whose start failed halfway.
import * as fs from "node:fs/promises";
import { releaseIndices } from "./allocate";
import { isProcessAlive, pathExists, processStartTime, runLocal, runOk, sleep, tail } from "./exec";
import { labInterfacePrefix, validateLabName } from "./layout";
import { labStateDir, readState } from "./state";

const STOP_GRACE_MS = 2_000;

/** Stops lab `name`: its processes, namespaces, veths, state dir and leases. Succeeds when it is gone. */
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
  const nsIds = await pinnedNetnsIds(netnses);
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
  // The holders' mount namespaces ended with them, and the kernel reuses a freed namespace's id at
  // once (for a lab starting right now): look for stragglers by the still-pinned netns ids only.
  const stragglers = await processesInNamespaces(await pinnedNetnsIds(netnses));
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
  await releaseIndices(name);
}

/** Returns the ids ("net:[inode]") of the network namespaces that /run/netns/<name> pins now. */
async function pinnedNetnsIds(netnses: Iterable<string>): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const ns of netnses) {
    try {
      const st = await fs.stat(`/run/netns/${ns}`);
      ids.add(`net:[${st.ino}]`);
    } catch {
      // already gone
    }
  }
  return ids;
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
