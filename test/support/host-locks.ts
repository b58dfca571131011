// The host lock's files on this machine, as the tests that run lock-take.sh and the remote shell's
// loop locally see them.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

/** Where lock-take.sh and the loop's perl keep the lock files (provider/src/host/lock-take.sh). */
export const LOCKS = "/run/pulumi-hypervisor/locks";

/** Whether some process holds the lock on `key` now, asked with a non-blocking flock. */
export function lockHeld(key: string): boolean {
  return spawnSync("flock", ["-n", join(LOCKS, `${key}.lock`), "true"]).status !== 0;
}
