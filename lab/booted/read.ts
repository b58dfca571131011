// Reading a booted host over SSH, for the booted tests and the bench: a command that must succeed,
// and what its systemd says about itself.
import type { BootedHost } from "./booted-host";

/** Returns the stdout of argv run on h over SSH; throws naming the host, command and stderr. */
export async function sshOk(h: BootedHost, argv: string[]): Promise<string> {
  const r = await h.ssh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} on ${h.name} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Returns how many times systemd reloaded its units since h booted: PID 1 logs "Reloading." at the
 * start of each (a daemon-reload, or an enable or disable without --no-reload), about 160 ms of the
 * host's CPU each on a small host.
 */
export async function systemdReloads(h: BootedHost): Promise<number> {
  const out = await sshOk(h, ["journalctl", "-b", "--no-pager", "-o", "cat", "_PID=1"]);
  return out.split("\n").filter((l) => l === "Reloading.").length;
}
