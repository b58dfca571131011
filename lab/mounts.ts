// The host's private mounts: what makes a network namespace look like its own machine. /run (and
// /dev/shm) is a fresh tmpfs, as on a real host (systemd mounts one; the provider keeps its locks, claims and
// daemons' run files there, and on a disk filesystem every such file costs the host an inode
// allocation and journal work that no real host pays). A host's state directory provides fresh
// /tmp, /root, /home and /var/log and the upper layers of overlays on /etc and /var/lib; the
// holder's setup script mounts them in the host's own mount namespace, sets its hostname and adds
// the lab users.
import * as fs from "node:fs/promises";
import * as path from "node:path";

/** Users that every lab host has besides root; all accept the lab client key. */
export const LAB_USERS = {
  /** sudo without a password. */
  sudo: "hvsudo",
  /** sudo that asks for this user's password; also logs in with that password. */
  password: "hvpass",
  passwordSecret: "hvpass-Secret.1",
} as const;

// Runs as `sh -c HOLDER_SETUP sh REAPER STATE_DIR HOSTNAME KIND [sshd argv...]` inside the new
// mount and UTS namespaces, already in the host's netns. Its inputs are positional parameters only.
export const HOLDER_SETUP = String.raw`
set -eu
R=$1 S=$2 HN=$3 KIND=$4
shift 4
# The inherited /sys belongs to the machine's netns; a fresh sysfs shows this netns's interfaces.
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
hostname "$HN"
# The copied /run/netns mounts would pin every other lab's namespaces for as long as this one lives.
umount -l /run/netns 2>/dev/null || true
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -m 0755 /run/sshd
mkdir -m 1777 /run/lock
# /dev/shm too, as on a real host: what a host's processes leave there (a remote shell's private
# directory, when the host is stopped with it running) goes with the host, not to the machine.
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount --bind "$S/tmp" /tmp
if [ "$KIND" = host ]; then
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc.upper,workdir=$S/etc.work" /etc
  mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$S/var-lib.upper,workdir=$S/var-lib.work" /var/lib
  mount --bind "$S/root" /root
  mount --bind "$S/home" /home
  mount --bind "$S/log" /var/log
  printf '%s\n' "$HN" > /etc/hostname
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$HN" > /etc/hosts
  # "!" (locked) would make sshd without PAM refuse key logins too.
  usermod -p '*' root
  useradd -M -d /home/hvsudo -s /bin/bash -p '*' hvsudo
  useradd -M -d /home/hvpass -s /bin/bash hvpass
  printf '%s:%s\n' hvpass '${LAB_USERS.passwordSecret}' | chpasswd
  for u in hvsudo hvpass; do
    mkdir -m 700 "/home/$u" "/home/$u/.ssh"
    cp /root/.ssh/authorized_keys "/home/$u/.ssh/authorized_keys"
    chown -R "$u:$u" "/home/$u"
  done
  printf 'hvsudo ALL=(ALL:ALL) NOPASSWD: ALL\nhvpass ALL=(ALL:ALL) ALL\n' > /etc/sudoers.d/pulumi-hypervisor-lab
  chmod 440 /etc/sudoers.d/pulumi-hypervisor-lab
fi
cd /
exec perl -e "$R" -- "$S" "$@"
`;

/** Creates a host's state directory: overlay layers, private mount sources and root's key. */
export async function prepareHostDirs(hd: string, clientPub: string): Promise<void> {
  for (const sub of ["etc.upper", "etc.work", "var-lib.upper", "var-lib.work", "home", "log"]) {
    await fs.mkdir(path.join(hd, sub), { recursive: true, mode: 0o755 });
  }
  await prepareTmp(hd);
  await fs.mkdir(path.join(hd, "root", ".ssh"), { recursive: true, mode: 0o700 });
  await fs.chmod(path.join(hd, "root"), 0o700);
  await fs.writeFile(path.join(hd, "root", ".ssh", "authorized_keys"), clientPub, { mode: 0o600 });
}

/** Creates the private /tmp of a host or of the WAN (their /run is a tmpfs of their own). */
export async function prepareTmp(hd: string): Promise<void> {
  await fs.mkdir(path.join(hd, "tmp"), { recursive: true });
  await fs.chmod(path.join(hd, "tmp"), 0o1777);
}
