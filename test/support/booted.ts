// What the booted-host tests share: running a command over SSH that must succeed, and the shell
// line that lists files of the provider left on a host.
import type { BootedHost } from "../../lab/booted/booted-host";

// Files of the provider anywhere they could be (units and their enablement links, sysctl.d,
// networkd or NetworkManager snippets), and anything inside its own folders (empty folders may stay).
export const LEFTOVER_FILES =
  "find /etc /run/systemd /var/lib -name '*pulumi-hypervisor*' ! -type d 2>/dev/null; " +
  "find /etc/pulumi-hypervisor /var/lib/pulumi-hypervisor /var/log/pulumi-hypervisor " +
  "-type f 2>/dev/null; true";

/** Returns the stdout of argv run on h over SSH; throws naming the host, command and stderr. */
export async function sshOk(h: BootedHost, argv: string[]): Promise<string> {
  const r = await h.ssh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} on ${h.name} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Returns the provider's failed units on h, one per line ("" when none failed). */
export async function failedProviderUnits(h: BootedHost): Promise<string> {
  // `systemctl --failed PATTERN` takes the pattern for a verb (systemd 252): name the verb.
  const argv = ["systemctl", "list-units", "--failed", "--no-legend", "--plain"];
  return (await sshOk(h, [...argv, "pulumi-hypervisor-*"])).trim();
}
