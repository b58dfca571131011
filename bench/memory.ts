// Memory figures for the bench, read from /proc: the plugin's resident set (its peak, VmHWM), and
// what a lab host's sessions hold between operations (the processes of the sessions under its
// listening sshd: the connection's sshd processes, the remote shells' loops and perls; not the
// daemons they started), as their proportional set size (PSS: each shared page divided among
// the processes that map it, so a host's figure adds up to the memory its sessions use) and as
// their private pages.
import { readFile } from "node:fs/promises";
import { statFields } from "../lab/exec";

/** Returns the kB of `field` in a /proc status or smaps text ("Pss:   1234 kB"). */
export function kbField(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
  if (!m?.[1]) throw new Error(`no ${field} in ${JSON.stringify(text.slice(0, 80))}`);
  return Number(m[1]);
}

// A process's file under /proc, or undefined when the process is gone (it may end while read).
async function procText(pid: number, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return undefined;
    throw e;
  }
}

/** The resident set of a running process, now and at its peak (VmRSS, VmHWM), in kB. */
export interface Resident {
  rssKb: number;
  peakKb: number;
}

/** Returns a process's resident set now and at its peak; undefined when it is gone. */
export async function residentOf(pid: number): Promise<Resident | undefined> {
  const text = await procText(pid, "status");
  return text === undefined
    ? undefined
    : { rssKb: kbField(text, "VmRSS"), peakKb: kbField(text, "VmHWM") };
}

/**
 * What a set of processes holds: how many there are, the sum of their PSS, and of their private
 * pages (what their exit frees whatever else runs: PSS shrinks as more processes share a library),
 * in kB.
 */
export interface Held {
  processes: number;
  pssKb: number;
  privateKb: number;
}

/** Returns what `pids` hold (a process gone meanwhile is not counted; kernel threads hold 0). */
export async function heldBy(pids: readonly number[]): Promise<Held> {
  const texts = await Promise.all(pids.map((p) => procText(p, "smaps_rollup")));
  const held = { processes: 0, pssKb: 0, privateKb: 0 };
  for (const t of texts) {
    if (t === undefined) continue;
    held.processes++;
    // a kernel thread's smaps_rollup is empty
    if (t.trim() === "") continue;
    held.pssKb += kbField(t, "Pss");
    held.privateKb += kbField(t, "Private_Clean") + kbField(t, "Private_Dirty");
  }
  return held;
}

/** Returns the parent pid and the session id from a /proc/PID/stat text (after the command). */
export function linksOf(stat: string): Links {
  // state ppid pgrp session ...
  const rest = statFields(stat);
  const [parent, session] = [Number(rest[1]), Number(rest[3])];
  if (!Number.isInteger(parent) || !Number.isInteger(session)) {
    throw new Error(`no parent or session in ${JSON.stringify(stat.slice(0, 80))}`);
  }
  return { parent, session };
}

/**
 * Returns those of `pids` that belong to `root`'s sessions (not root itself): each process that
 * descends from it, and each process in a session one of those leads (a remote shell's perl
 * forks away from its shell into the reaper, but stays in the shell's session). Not the daemons
 * they started, which leave for sessions of their own (dnsmasq).
 */
export async function sessionsUnder(root: number, pids: readonly number[]): Promise<number[]> {
  const links = new Map<number, Links>();
  for (const pid of pids) {
    const stat = await procText(pid, "stat");
    if (stat !== undefined) links.set(pid, linksOf(stat));
  }
  return sessionsIn(root, pids, links);
}

/** A process's parent and session. */
export interface Links {
  parent: number;
  session: number;
}

/** sessionsUnder over links already read (a process without them, gone, is not counted). */
export function sessionsIn(
  root: number,
  pids: readonly number[],
  links: ReadonlyMap<number, Links>,
): number[] {
  const descends = (pid: number): boolean => {
    // the group's processes only: a chain leaves it at the listening sshd or at a reaper; at most
    // one step a process, should a pid reused between the reads make a loop
    let p = links.get(pid)?.parent;
    for (let steps = 0; p !== undefined && steps <= links.size; steps++) {
      if (p === root) return true;
      p = links.get(p)?.parent;
    }
    return false;
  };
  const under = new Set(pids.filter((pid) => pid !== root && descends(pid)));
  return pids.filter((pid) => {
    const session = links.get(pid)?.session;
    return under.has(pid) || (session !== undefined && under.has(session));
  });
}

/** Returns "12.3" for kB as MB with one decimal. */
export const mb = (kb: number): string => (kb / 1024).toFixed(1);
