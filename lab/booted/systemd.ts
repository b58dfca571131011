// What a booted host's systemd says about itself, read over SSH: for tests and the bench.
import type { BootedHost } from "./booted-host";

/**
 * Returns how many times systemd reloaded its units since h booted: PID 1 logs "Reloading." at the
 * start of each (a daemon-reload, or an enable or disable without --no-reload), about 160 ms of the
 * host's CPU each on a small host.
 */
export async function systemdReloads(h: BootedHost): Promise<number> {
  const r = await h.ssh(["journalctl", "-b", "--no-pager", "-o", "cat", "_PID=1"]);
  if (r.code !== 0) throw new Error(`journalctl on ${h.name} exited ${r.code}: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l === "Reloading.").length;
}
