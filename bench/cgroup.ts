// CPU accounting for the bench: a cgroup v2 group per measured process tree (the plugin, a tool,
// a lab host's sshd); `cpu.stat` usage_usec counts every process in it and every child forked
// later, whichever core ran it, so the figure holds on a shared machine where wall time does not.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
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

  /** Sends SIGTERM to every process still in the group (the bench started them all). */
  async killAll(): Promise<void> {
    const procs = await readFile(path.join(this.dir, "cgroup.procs"), "utf8").catch(() => "");
    for (const pid of procs.split("\n").filter((p) => p !== "")) {
      try {
        process.kill(Number(pid), "SIGTERM");
      } catch {
        // already gone
      }
    }
  }

  /** Moves what is still inside back to where the bench runs and removes the group. */
  async remove(): Promise<void> {
    const procs = await readFile(path.join(this.dir, "cgroup.procs"), "utf8").catch(() => "");
    for (const pid of procs.split("\n").filter((p) => p !== "")) {
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

/** The bench's cgroups, under one parent named after its pid; `undefined` when not available. */
export class CpuAccounting {
  private readonly groups: CpuGroup[] = [];
  private constructor(private readonly parent: string) {}

  /** Returns the accounting, or a reason it is not available (no cgroup2, not writable). */
  static async open(): Promise<CpuAccounting | string> {
    const root = cgroup2Mount();
    if (!root) return "no cgroup2 mount in /proc/mounts";
    const parent = path.join(root, `pulumi-hypervisor-bench-${process.pid}`);
    try {
      await mkdir(parent, { recursive: true });
      await readFile(path.join(parent, "cpu.stat"), "utf8").then(parseCpuStat);
    } catch (e) {
      return `cannot use cgroup2 at ${root}: ${e instanceof Error ? e.message : String(e)}`;
    }
    return new CpuAccounting(parent);
  }

  /** Returns a new group named `name` (letters, digits, dashes) holding `pids`. */
  async group(name: string, pids: number[] = []): Promise<CpuGroup> {
    const g = await CpuGroup.create(this.parent, name);
    for (const pid of pids) await g.add(pid);
    this.groups.push(g);
    return g;
  }

  /** Removes every group and the parent. */
  async close(): Promise<void> {
    for (const g of this.groups.splice(0)) await g.remove();
    // A group whose last process just exited stays busy for a moment.
    for (let i = 0; i < 50; i++) {
      const done = await rmdir(this.parent).then(
        () => true,
        (e: NodeJS.ErrnoException) => e.code === "ENOENT",
      );
      if (done) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
