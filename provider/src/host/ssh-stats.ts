// Counters of what this process opened over SSH, for tests and the bench.

/** Bumped by dial (connectionsOpened, each hop counts) and by every opened channel. */
export const sshCounters = { connectionsOpened: 0, channelsOpened: 0 };

/** Returns how many SSH connections (hops included) and channels this process has opened. */
export function sshStats(): { connectionsOpened: number; channelsOpened: number } {
  return { ...sshCounters };
}
