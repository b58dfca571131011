// Address slots of booted lab hosts: slot i is 198.19.(200+i).0/24, the machine's end .1 and the
// host's uplink .2. A host that asks for them also gets a WAN link and a second NIC, each a /29 of
// 198.19.240.0/21 (the machine's end first, the host's second). A slot is held by a file naming its
// host, created exclusively, and stays held while that host's state directory exists. This range is
// apart from the namespace lab's 198.18.<i>.0/24 management and 198.19.<i>.0/24 uplink networks.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { exists } from "./run";

export const BOOTED_STATE_ROOT = "/var/tmp/pulumi-hypervisor-booted";
export const SLOT_COUNT = 40;
const FIRST_THIRD_OCTET = 200;
// 198.19.240.0/21 holds the side links: two /29s per slot.
const SIDE_LINK_BASE = (198 << 24) | (19 << 16) | (240 << 8);

/** A link of the host beyond its uplink: a veth (or tap) whose machine end has an address too. */
export interface SideLink {
  /** The interface inside the host ("wan0", "eth1"). */
  interface: string;
  /** The machine's end of the link. */
  outsideInterface: string;
  outsideAddress: string;
  /** The host's address on the link. */
  address: string;
  prefixLength: 29;
}

/** The side links a host may ask for: a WAN (its default route) and a second NIC. */
export type SideLinkKind = "wan" | "nic";

export interface Slot {
  index: number;
  /** The machine's end of the host's link (veth or tap). */
  outsideInterface: string;
  outsideAddress: string;
  /** The host's uplink address. */
  address: string;
  prefixLength: 24;
  /** The WAN link: the host's default route goes to the machine's end. */
  wan: SideLink;
  /** A second NIC, for scenarios that enslave a NIC the host's ifupdown owns to a bridge. */
  nic: SideLink;
}

/** Returns the names and addresses of slot index. */
export function slotLayout(index: number): Slot {
  if (!Number.isInteger(index) || index < 0 || index >= SLOT_COUNT) {
    throw new Error(`booted lab slot ${index} is outside 0..${SLOT_COUNT - 1}`);
  }
  const net = `198.19.${FIRST_THIRD_OCTET + index}`;
  return {
    index,
    outsideInterface: `hvb${index}`,
    outsideAddress: `${net}.1`,
    address: `${net}.2`,
    prefixLength: 24,
    wan: sideLink(index, 0, "wan0", `hvb${index}w`),
    nic: sideLink(index, 1, "eth1", `hvb${index}n`),
  };
}

function sideLink(index: number, which: number, inside: string, outside: string): SideLink {
  const base = SIDE_LINK_BASE + (index * 2 + which) * 8;
  return {
    interface: inside,
    outsideInterface: outside,
    outsideAddress: ipv4(base + 1),
    address: ipv4(base + 2),
    prefixLength: 29,
  };
}

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join(".");
}

/** Returns the directory that holds everything of host name. */
export function hostStateDir(name: string, root: string = BOOTED_STATE_ROOT): string {
  return path.join(root, "hosts", name);
}

/** Returns the host named in slot file `file` ("" when empty); undefined when there is none. */
async function holderOf(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, "utf8")).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Takes the lock of the slot file `file` (`<file>.taking`, a directory); undefined when held. */
async function lockSlot(file: string): Promise<(() => Promise<void>) | undefined> {
  const lock = `${file}.taking`;
  try {
    await fs.mkdir(lock);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw e;
  }
  return () => fs.rmdir(lock);
}

/**
 * Returns a free slot, now held for host name. A slot file appears with its holder's name in it (a
 * link to a file written first), so a host that takes a slot at the same moment never reads it
 * empty and takes it for a dead holder's. A dead holder's slot (its state directory is gone) is
 * taken over under a lock of that slot (`N.taking`, a directory), its file replaced by one rename:
 * the slot is never without a file that another host could take too. `root` is for tests.
 */
export async function takeSlot(name: string, root: string = BOOTED_STATE_ROOT): Promise<Slot> {
  const dir = path.join(root, "slots");
  await fs.mkdir(dir, { recursive: true });
  const mine = await fs.mkdtemp(path.join(dir, ".claim-"));
  const named = path.join(mine, "holder");
  await fs.writeFile(named, `${name}\n`);
  try {
    for (let i = 0; i < SLOT_COUNT; i++) {
      const file = path.join(dir, String(i));
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await fs.link(named, file);
          return slotLayout(i);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        const holder = await holderOf(file);
        // released meanwhile: try again
        if (holder === undefined) continue;
        if (holder !== "" && (await exists(hostStateDir(holder, root)))) break;
        const unlock = await lockSlot(file);
        // another host is taking it over
        if (unlock === undefined) break;
        try {
          const now = await holderOf(file);
          if (now === undefined) continue;
          if (now !== holder) break;
          const over = path.join(mine, "over");
          await fs.writeFile(over, `${name}\n`);
          await fs.rename(over, file);
          return slotLayout(i);
        } finally {
          await unlock();
        }
      }
    }
  } finally {
    await fs.rm(mine, { recursive: true, force: true });
  }
  throw new Error(`booted lab: all ${SLOT_COUNT} address slots are held (see ${dir})`);
}

/**
 * Releases slot index if host name holds it, under the slot's lock: a host that takes the slot
 * over (this host's directory is already gone) replaces the file meanwhile, and the file removed
 * here is then never that host's. `root` is for tests.
 */
export async function releaseSlot(
  index: number,
  name: string,
  root: string = BOOTED_STATE_ROOT,
): Promise<void> {
  const file = path.join(root, "slots", String(index));
  const unlock = await lockSlot(file);
  // another host is taking it over from this one: its file goes in that host's rename
  if (unlock === undefined) return;
  try {
    if ((await holderOf(file)) === name) await fs.rm(file, { force: true });
  } finally {
    await unlock();
  }
}
