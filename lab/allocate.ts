// Host indices for labs, so that labs started at the same time (test files in parallel, the bench,
// `npm run lab`) never share addresses. Index i is leased by a file /run/pulumi-hypervisor-lab/<i>
// created with O_EXCL; it names the lab and the processes that keep it in use (first the process
// that allocates, then the lab's namespace holders). A lease none of whose processes is alive is
// stale and is taken over. /run is a tmpfs, so a reboot (which ends every lab) clears them all.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { processStartTime, runOk } from "./exec";
import { LAB_MAX_INDEX } from "./layout";

export const LAB_LEASE_DIR = "/run/pulumi-hypervisor-lab";

interface Owner {
  pid: number;
  start: string;
}

interface Lease {
  lab: string;
  owners: Owner[];
}

export interface AllocateOptions {
  /** Wants exactly the indices first..first+count-1 (a lab with stable addresses) or fails. */
  first?: number;
}

let reclaims = 0;

/** Returns `count` host indices leased to lab `name` (lowest free first). */
export async function allocateIndices(
  name: string,
  count: number,
  opts: AllocateOptions = {},
): Promise<number[]> {
  await fs.mkdir(LAB_LEASE_DIR, { recursive: true, mode: 0o755 });
  const self = await ownerOf(process.pid);
  const used = await addressesInUse();
  const candidates =
    opts.first === undefined
      ? Array.from({ length: LAB_MAX_INDEX }, (_, i) => i + 1)
      : Array.from({ length: count }, (_, i) => (opts.first ?? 1) + i);
  const got: number[] = [];
  try {
    for (const index of candidates) {
      if (got.length === count) break;
      let taken = await tryLease(index, { lab: name, owners: [self] });
      if (taken === undefined && used.has(`198.18.${index}.1`)) {
        // A lab started without a lease (or anything else) has the address: leave it alone.
        await fs.rm(leaseFile(index), { force: true });
        taken = `an interface of this machine with 198.18.${index}.1`;
      }
      if (taken === undefined) {
        got.push(index);
      } else if (opts.first !== undefined) {
        throw new Error(
          `lab ${name}: host index ${index} (198.18.${index}.0/24) is held by ${taken}: stop ` +
            `that lab (npx tsx lab/cli.ts down --name NAME) or start this one without a fixed index`,
        );
      }
    }
    if (got.length < count) {
      throw new Error(
        `lab ${name}: only ${got.length} of ${count} host indices are free (1..${LAB_MAX_INDEX}); ` +
          `see the leases in ${LAB_LEASE_DIR}`,
      );
    }
    return got;
  } catch (e) {
    await Promise.all(got.map((i) => fs.rm(leaseFile(i), { force: true })));
    throw e;
  }
}

/** Records pids (the lab's namespace holders) as what keeps the leases of `name` in use. */
export async function holdIndices(name: string, indices: number[], pids: number[]): Promise<void> {
  const owners = await Promise.all(pids.map(ownerOf));
  for (const index of indices) {
    const file = leaseFile(index);
    const temp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(temp, JSON.stringify({ lab: name, owners } satisfies Lease) + "\n");
    await fs.rename(temp, file);
  }
}

/** Removes every lease of lab `name`. */
export async function releaseIndices(name: string): Promise<void> {
  for (const [index, lease] of await readLeases()) {
    if (lease.lab === name) await fs.rm(leaseFile(index), { force: true });
  }
}

/** Returns the leases on this machine by host index. */
export async function readLeases(): Promise<Map<number, Lease>> {
  const leases = new Map<number, Lease>();
  for (const entry of await fs.readdir(LAB_LEASE_DIR).catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const lease = await readLease(leaseFile(Number(entry)));
    if (lease !== undefined) leases.set(Number(entry), lease);
  }
  return leases;
}

function leaseFile(index: number): string {
  return path.join(LAB_LEASE_DIR, String(index));
}

async function ownerOf(pid: number): Promise<Owner> {
  return { pid, start: (await processStartTime(pid)) ?? "" };
}

async function readLease(file: string): Promise<Lease | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as Lease;
  } catch {
    return undefined;
  }
}

async function isLive(lease: Lease): Promise<boolean> {
  for (const o of lease.owners) {
    if ((await processStartTime(o.pid)) === o.start) return true;
  }
  return false;
}

/** Leases index to `lease`; returns undefined on success, or what holds it. */
async function tryLease(index: number, lease: Lease): Promise<string | undefined> {
  const file = leaseFile(index);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, JSON.stringify(lease) + "\n", { flag: "wx" });
      return undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const text = await fs.readFile(file, "utf8").catch(() => undefined);
    if (text === undefined) continue; // released meanwhile
    let current: Lease | undefined;
    try {
      current = JSON.parse(text) as Lease;
    } catch {
      current = undefined; // being written by its owner right now: treat as held
    }
    if (current === undefined) return "a lease being written";
    if (await isLive(current)) return `lab ${JSON.stringify(current.lab)}`;
    await reclaim(file, text);
  }
  return "a lease that keeps changing";
}

/** Removes a stale lease file, unless another process replaced it since it was read. */
async function reclaim(file: string, staleText: string): Promise<void> {
  const aside = `${file}.reclaim.${process.pid}.${++reclaims}`;
  try {
    await fs.rename(file, aside);
  } catch {
    return; // someone else reclaimed or released it first
  }
  const moved = await fs.readFile(aside, "utf8").catch(() => "");
  if (moved !== staleText) {
    // A fresh lease replaced the stale one between our read and the rename: put it back.
    await fs.link(aside, file).catch(() => undefined);
  }
  await fs.rm(aside, { force: true });
}

/** Returns the IPv4 addresses on this machine's interfaces (a lab from any source shows here). */
async function addressesInUse(): Promise<Set<string>> {
  const links = JSON.parse(await runOk(["ip", "-j", "-4", "addr", "show"])) as Array<{
    addr_info?: Array<{ local?: string }>;
  }>;
  return new Set(links.flatMap((l) => (l.addr_info ?? []).flatMap((a) => a.local ?? [])));
}
