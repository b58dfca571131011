// A lab's state file: what `attachLab` and `stopLab` need to find and kill it from any process.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { LAB_STATE_ROOT } from "./layout";

export interface HostState {
  name: string;
  index: number;
  netns: string;
  mgmtVeth: string;
  holderPid: number;
  holderStart: string;
  sshdPid: number;
  sshdStart: string;
}

export interface WanState {
  netns: string;
  holderPid: number;
  holderStart: string;
}

export interface LabState {
  name: string;
  prefix: string;
  hosts: HostState[];
  wan?: WanState;
}

/** Returns the directory holding lab `name`'s keys, logs and per-host state. */
export function labStateDir(name: string): string {
  return path.join(LAB_STATE_ROOT, name);
}

let stateWrites = 0;

/** Writes the state file atomically (temp file and rename). */
export async function writeState(state: LabState): Promise<void> {
  const file = path.join(labStateDir(state.name), "lab.json");
  // Hosts start concurrently and each records itself: every write needs its own temp file.
  const temp = `${file}.${process.pid}.${++stateWrites}.tmp`;
  await fs.writeFile(temp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  await fs.rename(temp, file);
}

/** Returns the state of lab `name`, or undefined when it has none. */
export async function readState(name: string): Promise<LabState | undefined> {
  try {
    return JSON.parse(
      await fs.readFile(path.join(labStateDir(name), "lab.json"), "utf8"),
    ) as LabState;
  } catch {
    return undefined;
  }
}
