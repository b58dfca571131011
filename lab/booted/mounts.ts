// Mounts of the booted lab in the machine's mount namespace.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { runLocal, runOk } from "./run";

/** Returns the mount points of this mount namespace, decoded from /proc/self/mountinfo. */
export async function listMountPoints(): Promise<string[]> {
  const text = await fs.readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Returns whether dir is a mount point. */
export async function isMountPoint(dir: string): Promise<boolean> {
  return (await listMountPoints()).includes(path.resolve(dir));
}

/** Mounts an overlay of lower (read-only) and upper at target, unless something is mounted there. */
export async function mountOverlay(
  lower: string,
  upper: string,
  work: string,
  target: string,
): Promise<void> {
  if (await isMountPoint(target)) return;
  for (const d of [upper, work, target]) await fs.mkdir(d, { recursive: true });
  await runOk([
    "mount",
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    target,
  ]);
}

/** Unmounts everything at and below dir, deepest first (lazily when a mount is busy). */
export async function unmountUnder(dir: string): Promise<void> {
  const base = path.resolve(dir);
  const below = (await listMountPoints())
    .filter((p) => p === base || p.startsWith(base + "/"))
    .sort((a, b) => b.length - a.length);
  for (const p of below) {
    const r = await runLocal(["umount", p]);
    if (r.code !== 0) await runOk(["umount", "-l", p]);
  }
}

/** Removes dir after unmounting everything below it, so nothing is deleted through a mount. */
export async function removeHostTree(dir: string): Promise<void> {
  await unmountUnder(dir);
  const left = (await listMountPoints()).filter((p) => p.startsWith(path.resolve(dir) + "/"));
  if (left.length > 0)
    throw new Error(`booted lab: ${left.join(", ")} still mounted; not removing ${dir}`);
  await fs.rm(dir, { recursive: true, force: true });
}
