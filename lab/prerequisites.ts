// What a machine needs to run lab hosts: Linux, root, and the programs of scripts/install-deps.sh.
import * as fs from "node:fs/promises";
import { findProgram, pathExists } from "./exec";

const REQUIRED_PROGRAMS: ReadonlyArray<readonly [program: string, pkg: string]> = [
  ["sshd", "openssh-server"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
  ["ip", "iproute2"],
  ["bridge", "iproute2"],
  ["ss", "iproute2"],
  ["unshare", "util-linux"],
  ["nsenter", "util-linux"],
  ["mount", "mount"],
  ["umount", "mount"],
  ["hostname", "hostname"],
  ["useradd", "passwd"],
  ["socat", "socat"],
  ["usermod", "passwd"],
  ["chpasswd", "passwd"],
  ["sudo", "sudo"],
  ["perl", "perl-base"],
  ["sh", "dash"],
  ["sysctl", "procps"],
  ["ps", "procps"],
  ["fuser", "psmisc"],
  ["dnsmasq", "dnsmasq-base"],
  ["nft", "nftables"],
  ["iptables", "iptables"],
  ["busybox", "busybox-static"],
  ["cpio", "cpio"],
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["qemu-img", "qemu-utils"],
  // a Dropbear server in a lab host, which the provider refuses for commands and uses as a proxy
  ["dropbear", "dropbear-bin"],
  ["dropbearkey", "dropbear-bin"],
];

/** Throws one error listing everything the lab needs that this machine lacks. */
export async function checkLabPrerequisites(): Promise<void> {
  const problems: string[] = [];
  if (process.platform !== "linux")
    problems.push(`lab hosts need Linux, this is ${process.platform}`);
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    problems.push("lab hosts need root (network and mount namespaces)");
  }
  const missing: string[] = [];
  for (const [program, pkg] of REQUIRED_PROGRAMS) {
    if ((await findProgram(program)) === undefined) missing.push(`${program} (${pkg})`);
  }
  if (missing.length > 0) problems.push(`missing programs: ${missing.join(", ")}`);
  const boot = await fs.readdir("/boot").catch(() => [] as string[]);
  if (!boot.some((f) => f.startsWith("vmlinuz-"))) {
    problems.push("missing a guest kernel /boot/vmlinuz-* (linux-image-cloud-amd64)");
  }
  if (!(await pathExists("/usr/lib/openssh/sftp-server"))) {
    problems.push("missing /usr/lib/openssh/sftp-server (openssh-server)");
  }
  if (problems.length > 0) {
    throw new Error(
      `lab prerequisites are not met: ${problems.join("; ")}; run scripts/install-deps.sh`,
    );
  }
}
