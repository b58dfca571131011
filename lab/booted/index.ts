// Booted Debian 12 lab hosts: systemd-nspawn containers and QEMU TCG virtual machines of one
// cached debootstrap root, with systemd as PID 1 and real reboots.
import { listHostNames, readHostRecord, type BootedHost } from "./booted-host";
import { attachHost } from "./nspawn-host";
import { isAlive } from "./run";
import { attachVm } from "./vm-host";

export type { BootedHost, HostKind, StartOptions } from "./booted-host";
export { startHost } from "./nspawn-host";
export { startVm } from "./vm-host";
export { ensureRoot, MACHINE_PACKAGES, ROOT_RECIPE } from "./root";
export { sshOk, systemdReloads } from "./read";
export { attachHost, attachVm };

/** Returns host name (container or virtual machine) as some process started it, or undefined. */
export async function attachAny(name: string): Promise<BootedHost | undefined> {
  return (await attachHost(name)) ?? (await attachVm(name));
}

/** Stops the hosts whose owner process has ended (a test run killed before its cleanup); returns their names. */
export async function stopOrphanedHosts(): Promise<string[]> {
  const stopped: string[] = [];
  for (const name of await listHostNames()) {
    const record = await readHostRecord(name);
    if (record?.owner === undefined || (await isAlive(record.owner))) continue;
    const host = await attachAny(name);
    if (host === undefined) continue;
    await host.stop();
    stopped.push(name);
  }
  return stopped;
}
