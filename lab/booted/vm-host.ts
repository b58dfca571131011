// A booted lab host as a QEMU virtual machine of the same cached root: a real kernel (the root's
// own linux-image-cloud-amd64 and initramfs), udev and modules, under TCG only (nested KVM stalls
// or aborts on some machines). The QEMU process survives guest reboots; the disk is an ext4 image
// made from the root with mkfs.ext4 -d.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import {
  bootHost,
  claimHostSlot,
  ensureClientKey,
  makeBootedHost,
  readHostRecord,
  requirePrograms,
  validateHostName,
  type BootedHost,
  type HostRecord,
  type StartOptions,
} from "./booted-host";
import { UPLINK, writeHostIdentity } from "./identity";
import { ensureKeyPair } from "./keys";
import { mountOverlay, removeHostTree, unmountUnder } from "./mounts";
import { ensureRoot } from "./root";
import { isAlive, runLocal, runOk, sleep, tailOf } from "./run";
import { hostStateDir, releaseSlot, slotLayout, type Slot } from "./slots";

const SSH_START_TIMEOUT_MS = 180_000;
const REBOOT_TIMEOUT_MS = 240_000;
const DISK_SIZE = "2G";
const MEMORY_MIB = 1024;
// One TCG vCPU does all the work of the boot: leave out what a lab host never uses (KVM inside
// an emulated CPU, the ext4 snapshot reaper of LVM volumes it does not have).
const KERNEL_COMMAND_LINE =
  "root=/dev/vda rw console=ttyS0 net.ifnames=0 module_blacklist=kvm,kvm_amd,kvm_intel " +
  "systemd.mask=e2scrub_reap.service";

const PROGRAMS: ReadonlyArray<[string, string]> = [
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["mkfs.ext4", "e2fsprogs"],
  ["mount", "mount"],
  ["ip", "iproute2"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
];

/** Returns a running virtual machine named name, booted from the cached root, answering SSH. */
export async function startVm(name: string, opts: StartOptions = {}): Promise<BootedHost> {
  validateHostName(name);
  if (opts.links !== undefined && opts.links.length > 0) {
    throw new Error(
      `booted lab: vm ${name}: side links (${opts.links.join(", ")}) are for containers only; ` +
        `NAT on a vm goes out of its uplink ${UPLINK}`,
    );
  }
  await requirePrograms(PROGRAMS);
  const root = await ensureRoot(opts.log);
  if (root.buildMs > 0) opts.log?.(`booted lab: built the root in ${root.buildMs} ms`);
  if ((await readHostRecord(name)) !== undefined) {
    throw new Error(`booted lab: host ${name} exists; stop it first`);
  }
  const dir = hostStateDir(name);
  const { record, slot } = await claimHostSlot(name, "vm", root.hash, opts);
  const host = await makeVm(record, slot);
  return bootHost(host, record, SSH_START_TIMEOUT_MS, async (started) => {
    const disk = await buildDisk(root.dir, dir, name, slot);
    opts.log?.(`booted lab: vm ${name} disk image made in ${Date.now() - started} ms`);
    const boot = await findKernel(root.dir);
    await runOk(["ip", "tuntap", "add", "dev", slot.outsideInterface, "mode", "tap"]);
    await runOk([
      "ip",
      "addr",
      "replace",
      `${slot.outsideAddress}/${slot.prefixLength}`,
      "dev",
      slot.outsideInterface,
    ]);
    await runOk(["ip", "link", "set", "dev", slot.outsideInterface, "up"]);
    const pidFile = path.join(dir, "qemu.pid");
    await runOk(qemuArgv(name, dir, disk, boot, slot, pidFile), { timeoutMs: 30_000 });
    const pid = Number((await fs.readFile(pidFile, "utf8")).trim());
    opts.log?.(`booted lab: vm ${name} (qemu pid ${pid}) booting, console in ${dir}/console.log`);
    return pid;
  });
}

/** Returns the virtual machine name as another process started it, or undefined. */
export async function attachVm(name: string): Promise<BootedHost | undefined> {
  const record = await readHostRecord(name);
  if (record?.kind !== "vm") return undefined;
  return makeVm(record, slotLayout(record.slot));
}

/** Returns the argv of QEMU for one virtual machine: TCG, one vCPU, virtio disk and network. */
export function qemuArgv(
  name: string,
  dir: string,
  disk: string,
  boot: { kernel: string; initrd: string },
  slot: Slot,
  pidFile: string,
): string[] {
  const mac = `52:54:00:c8:${(slot.index >> 8).toString(16).padStart(2, "0")}:${(slot.index & 255)
    .toString(16)
    .padStart(2, "0")}`;
  return [
    "qemu-system-x86_64",
    "-name",
    name,
    "-machine",
    "pc",
    "-accel",
    "tcg",
    "-smp",
    "1",
    "-m",
    String(MEMORY_MIB),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-kernel",
    boot.kernel,
    "-initrd",
    boot.initrd,
    "-append",
    KERNEL_COMMAND_LINE,
    "-drive",
    `file=${disk},if=virtio,format=raw`,
    "-netdev",
    `tap,id=uplink,ifname=${slot.outsideInterface},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=uplink,mac=${mac}`,
    "-serial",
    `file:${path.join(dir, "console.log")}`,
    "-pidfile",
    pidFile,
    "-daemonize",
  ];
}

// The image holds the cached root plus this host's identity and an fstab for the virtio disk.
async function buildDisk(rootDir: string, dir: string, name: string, slot: Slot): Promise<string> {
  const merged = path.join(dir, "build");
  await mountOverlay(rootDir, path.join(dir, "upper"), path.join(dir, "work"), merged);
  try {
    const client = await ensureClientKey();
    const hostKey = await ensureKeyPair(path.join(dir, "ssh_host_ed25519_key"), `root@${name}`);
    await writeHostIdentity(merged, {
      hostname: name,
      hostKeyPath: hostKey.privateKeyPath,
      clientPublicKey: client.publicKey,
      address: slot.address,
      prefixLength: slot.prefixLength,
    });
    await fs.writeFile(
      path.join(merged, "etc/fstab"),
      "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    );
    const disk = path.join(dir, "disk.img");
    await runOk(["mkfs.ext4", "-q", "-F", "-L", "booted-root", "-d", merged, disk, DISK_SIZE], {
      timeoutMs: 300_000,
    });
    return disk;
  } finally {
    await unmountUnder(merged);
    await fs.rm(path.join(dir, "upper"), { recursive: true, force: true });
    await fs.rm(path.join(dir, "work"), { recursive: true, force: true });
  }
}

async function findKernel(rootDir: string): Promise<{ kernel: string; initrd: string }> {
  const boot = path.join(rootDir, "boot");
  const files = await fs.readdir(boot);
  const kernel = files.filter((f) => f.startsWith("vmlinuz-")).sort()[0];
  if (kernel === undefined) throw new Error(`booted lab: no vmlinuz-* in ${boot}`);
  const initrd = `initrd.img-${kernel.slice("vmlinuz-".length)}`;
  if (!files.includes(initrd))
    throw new Error(`booted lab: ${boot} has ${kernel} but no ${initrd}`);
  return { kernel: path.join(boot, kernel), initrd: path.join(boot, initrd) };
}

function makeVm(record: HostRecord, slot: Slot): Promise<BootedHost> {
  const dir = hostStateDir(record.name);
  return makeBootedHost(record, slot, {
    sshStartTimeoutMs: SSH_START_TIMEOUT_MS,
    rebootTimeoutMs: REBOOT_TIMEOUT_MS,
    describe: async () => {
      const consoleLog = await fs.readFile(path.join(dir, "console.log"), "utf8").catch(() => "");
      return `vm ${record.name} console: ${tailOf(consoleLog, 10)}`;
    },
    stop: () => stopVm(record, slot),
  });
}

// QEMU quits on SIGTERM (the power is pulled: the disk is thrown away anyway).
async function stopVm(record: HostRecord, slot: Slot): Promise<void> {
  const dir = hostStateDir(record.name);
  const current = (await readHostRecord(record.name)) ?? record;
  const pid = current.pid;
  if (pid !== undefined && (await isAlive(pid))) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && (await isAlive(pid))) await sleep(100);
    if (await isAlive(pid)) process.kill(pid, "SIGKILL");
    while (await isAlive(pid)) await sleep(50);
  }
  await runLocal(["ip", "link", "del", slot.outsideInterface]);
  await removeHostTree(dir);
  await releaseSlot(slot.index, record.name);
}
