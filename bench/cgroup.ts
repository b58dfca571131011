// CPU accounting for the bench: a cgroup v2 group per measured process tree (the plugin, a tool,
// a lab host's sshd); `cpu.stat` usage_usec counts every process in it and every child forked
// later, whichever core ran it, so the figure holds on a shared machine where wall time does not.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import * as path from "node:path";

/** Returns where cgroup2 is mounted (/sys/fs/cgroup or a hybrid's /sys/fs/cgroup/unified). */
export function cgroup2Mount(mounts = readProcMounts()): string | undefined {
  for (const line of mounts.split("\n")) {
    const [, dir, type] = line.split(" ");
    if (type === "cgroup2" && dir) return dir;
  }
  return undefined;
}

function readProcMounts(): string {
  return existsSync("/proc/mounts") ? readFileSync("/proc/mounts", "utf8") : "";
}

/**
 * Returns the time every CPU of the machine spent busy, in microseconds, from the first line of
 * /proc/stat (user, nice, system, irq and softirq, in clock ticks of 10 ms; not idle, iowait or
 * the time a hypervisor gave to others, steal): what everything on the machine used, the bench's
 * own process and the kernel's work included.
 */
export function parseProcStatBusyUs(text: string): number {
  const m = /^cpu +(\d+) (\d+) (\d+) \d+ \d+ (\d+) (\d+)/.exec(text);
  if (!m) throw new Error(`/proc/stat has no cpu line: ${JSON.stringify(text.slice(0, 80))}`);
  return [m[1], m[2], m[3], m[4], m[5]].reduce((a, x) => a + Number(x), 0) * 10_000;
}

/** The machine's busy CPU time so far (parseProcStatBusyUs of /proc/stat). */
export function machineBusyUs(): number {
  return parseProcStatBusyUs(readFileSync("/proc/stat", "utf8"));
}

/** Returns usage_usec from a cpu.stat text. */
export function parseCpuStat(text: string): number {
  const m = /^usage_usec (\d+)$/m.exec(text);
  if (!m?.[1]) throw new Error(`cpu.stat has no usage_usec: ${JSON.stringify(text.slice(0, 80))}`);
  return Number(m[1]);
}

/** One cgroup the bench made: add processes, read their CPU time, remove it. */
export class CpuGroup {
  private constructor(
    readonly dir: string,
    private readonly home: string,
  ) {}

  /** Creates `<root>/<name>`; `home` is where its processes go back to on remove. */
  static async create(root: string, name: string): Promise<CpuGroup> {
    const dir = path.join(root, name);
    await mkdir(dir, { recursive: true });
    return new CpuGroup(dir, ownCgroupDir(root));
  }

  /** Moves a process (and so its future children) into the group. */
  async add(pid: number): Promise<void> {
    await writeFile(path.join(this.dir, "cgroup.procs"), `${pid}\n`);
  }

  /** Returns the CPU time (user + system) of everything that ran in the group, in microseconds. */
  async usageUsec(): Promise<number> {
    return parseCpuStat(await readFile(path.join(this.dir, "cpu.stat"), "utf8"));
  }

  /**
   * The same, read synchronously: the serial runs read it before and after each operation, on
   * the chain they time, where a read through the thread pool would cost the chain a wake-up.
   */
  usageUsecSync(): number {
    return parseCpuStat(readFileSync(path.join(this.dir, "cpu.stat"), "utf8"));
  }

  /** Returns the processes in the group now (none once it is removed). */
  async pids(): Promise<number[]> {
    const procs = await readFile(path.join(this.dir, "cgroup.procs"), "utf8").catch(() => "");
    return procs
      .split("\n")
      .filter((p) => p !== "")
      .map(Number);
  }

  /** Sends SIGTERM to every process still in the group (the bench started them all). */
  async killAll(): Promise<void> {
    for (const pid of await this.pids()) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
  }

  /** Moves what is still inside back to where the bench runs and removes the group. */
  async remove(): Promise<void> {
    for (const pid of await this.pids()) {
      await writeFile(path.join(this.home, "cgroup.procs"), `${pid}\n`).catch(() => undefined);
    }
    for (let i = 0; i < 50; i++) {
      const done = await rmdir(this.dir).then(
        () => true,
        (e: NodeJS.ErrnoException) => e.code === "ENOENT",
      );
      if (done) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

// The bench's own cgroup v2 directory (its line "0::/x" in /proc/self/cgroup).
function ownCgroupDir(root: string): string {
  const line = readFileSync("/proc/self/cgroup", "utf8")
    .split("\n")
    .find((l) => l.startsWith("0::"));
  return path.join(root, line ? line.slice(3) : "/");
}

/**
 * The bench's cgroups, each at the top of the cgroup2 tree as `pulumi-hypervisor-bench-PID-NAME`
 * (no common parent: a parent stays busy for a while after its children went). Groups a finished
 * bench could not remove yet are removed by the next one.
 */
export class CpuAccounting {
  private readonly groups: CpuGroup[] = [];
  private constructor(private readonly root: string) {}

  /** Returns the accounting, or a reason it is not available (no cgroup2, not writable). */
  static async open(): Promise<CpuAccounting | string> {
    const root = cgroup2Mount();
    if (!root) return "no cgroup2 mount in /proc/mounts";
    await removeStale(root);
    const probe = path.join(root, `${PREFIX}${process.pid}-probe`);
    try {
      await mkdir(probe, { recursive: true });
      await readFile(path.join(probe, "cpu.stat"), "utf8").then(parseCpuStat);
      await rmdir(probe);
    } catch (e) {
      return `cannot use cgroup2 at ${root}: ${e instanceof Error ? e.message : String(e)}`;
    }
    return new CpuAccounting(root);
  }

  /** Returns a new group named `name` (letters, digits, dashes) holding `pids`. */
  async group(name: string, pids: number[] = []): Promise<CpuGroup> {
    const g = await CpuGroup.create(this.root, `${PREFIX}${process.pid}-${name}`);
    for (const pid of pids) await g.add(pid);
    this.groups.push(g);
    return g;
  }

  /** Removes every group. */
  async close(): Promise<void> {
    for (const g of this.groups.splice(0)) await g.remove();
  }
}

const PREFIX = "pulumi-hypervisor-bench-";

// Removes the empty groups of benches that are no longer running.
async function removeStale(root: string): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const n of names) {
    const pid = Number(/^pulumi-hypervisor-bench-(\d+)-/.exec(n)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    await rmdir(path.join(root, n)).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
