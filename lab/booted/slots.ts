// Address slots of booted lab hosts: slot i is 198.19.(200+i).0/24, the machine's end .1 and the
// host's uplink .2. A slot is held by a file naming its host, created exclusively, and stays
// held while that host's state directory exists. This range is apart from the namespace lab's
// 198.18.<i>.0/24 management networks.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { exists } from "./run";

export const BOOTED_STATE_ROOT = "/var/tmp/pulumi-hypervisor-booted";
export const SLOT_COUNT = 40;
const FIRST_THIRD_OCTET = 200;

export interface Slot {
  index: number;
  /** The machine's end of the host's link (veth or tap). */
  outsideInterface: string;
  outsideAddress: string;
  /** The host's uplink address. */
  address: string;
  prefixLength: 24;
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
  };
}

/** Returns the directory that holds everything of host name. */
export function hostStateDir(name: string): string {
  return path.join(BOOTED_STATE_ROOT, "hosts", name);
}

/** Returns a free slot, now held for host name. */
export async function takeSlot(name: string): Promise<Slot> {
  const dir = path.join(BOOTED_STATE_ROOT, "slots");
  await fs.mkdir(dir, { recursive: true });
  for (let i = 0; i < SLOT_COUNT; i++) {
    const file = path.join(dir, String(i));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(file, `${name}\n`, { flag: "wx" });
        return slotLayout(i);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const holder = (await fs.readFile(file, "utf8").catch(() => "")).trim();
      if (holder === "" || !(await exists(hostStateDir(holder)))) {
        // The host that held it is gone without releasing it: take it over.
        await fs.rm(file, { force: true });
        continue;
      }
      break;
    }
  }
  throw new Error(`booted lab: all ${SLOT_COUNT} address slots are held (see ${dir})`);
}

/** Releases slot index if host name holds it. */
export async function releaseSlot(index: number, name: string): Promise<void> {
  const file = path.join(BOOTED_STATE_ROOT, "slots", String(index));
  const holder = (await fs.readFile(file, "utf8").catch(() => "")).trim();
  if (holder === name) await fs.rm(file, { force: true });
}
