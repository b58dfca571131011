// The tiny test guest: Debian's cloud kernel and a busybox initramfs that loads the virtio-net
// modules, configures eth0 (a static address from the kernel command line, or DHCP with udhcpc),
// reports on the serial console (ttyS0) and serves HTTP on port 80 and an echo service on port 7.
// Built from Debian packages on this machine (linux-image-cloud-amd64, busybox-static, cpio) and
// cached under /var/tmp keyed by the kernel version and a digest of what goes into the image.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";

export const GUEST_IMAGE_CACHE = "/var/tmp/pulumi-hypervisor-guest";
export const GUEST_HTTP_PORT = 80;
export const GUEST_ECHO_PORT = 7;

/** Every serial-console line the guest's /init prints starts with this. */
export const GUEST_LOG_PREFIX = "hv-guest:";

// In load order; the dependencies of each come before it (see modules.dep).
const WANTED_MODULES = ["virtio_pci", "virtio_net", "button", "evdev"];

export interface GuestImage {
  /** The kernel (/boot/vmlinuz-<version>), used in place. */
  kernel: string;
  /** The gzip-compressed newc cpio initramfs in the cache. */
  initrd: string;
  kernelVersion: string;
}

// Runs as PID 1. Only busybox applets; everything it reports starts with GUEST_LOG_PREFIX.
const INIT_SCRIPT = String.raw`#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /www /var/run /usr/bin /usr/sbin /sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
say() { echo "hv-guest: $*"; }
say "init on kernel $(uname -r)"
while read -r m; do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done < /lib/modules/load-order
ip= gw= name=hv-guest pings=
for w in $(cat /proc/cmdline); do
  case "$w" in
    hv.ip=*) ip=$(echo "$w" | cut -d= -f2-) ;;
    hv.gw=*) gw=$(echo "$w" | cut -d= -f2-) ;;
    hv.name=*) name=$(echo "$w" | cut -d= -f2-) ;;
    hv.ping=*) pings=$(echo "$w" | cut -d= -f2- | tr ',' ' ') ;;
  esac
done
hostname "$name"
# The power button (QMP system_powerdown) powers the guest off, so shutdowns are graceful.
# devtmpfs creates /dev/input/event* asynchronously, so the listener waits for its node.
powerbutton() {
  while :; do
    for d in /sys/class/input/input*; do
      [ "$(cat "$d/name" 2>/dev/null)" = "Power Button" ] || continue
      for e in "$d"/event*; do
        ev=/dev/input/$(basename "$e")
        if [ -c "$ev" ] && dd if="$ev" of=/dev/null bs=24 count=1 2>/dev/null; then
          say "power button pressed, powering off"; sync; poweroff -f
        fi
      done
    done
    sleep 0.2
  done
}
powerbutton &
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip link set eth0 up || say "no eth0"
if [ -n "$ip" ]; then
  ip addr add "$ip" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
  say "static ip=$ip gw=$gw"
else
  udhcpc -i eth0 -s /etc/udhcpc.sh -q -n -t 60 -T 1 -A 1 -x "hostname:$name" || say "dhcp failed"
fi
addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | head -n 1)
say "network-ready ip=$addr mac=$(cat /sys/class/net/eth0/address)"
echo "hv-guest $name" > /www/index.html
httpd -p 80 -h /www
nc -ll -p 7 -e /bin/cat &
say "service-ready http=80 echo=7"
# Reachability checks asked for on the command line: up to 30 tries each (peers may boot later).
for t in $pings; do
  ok=failed n=0
  while [ $n -lt 30 ]; do
    if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then ok=ok; break; fi
    n=$((n + 1)); sleep 1
  done
  say "ping $t $ok"
done
while :; do sleep 3600; done
`;

// udhcpc's event script: applies the lease and prints it on the console.
const UDHCPC_SCRIPT = String.raw`#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then
      ip route add default via "$(echo $router | cut -d' ' -f1)" dev "$interface"
    fi
    echo "hv-guest: lease ip=$ip/$mask router=$router dns=$dns hostname=$hostname"
    ;;
esac
exit 0
`;

function run(
  argv: string[],
  stdin?: Buffer,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const [file, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(file ?? "false", args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => (err += b.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }),
    );
    child.stdin.end(stdin ?? Buffer.alloc(0));
  });
}

/** Returns the newest installed cloud kernel's version ("6.1.0-56-cloud-amd64"). */
export async function cloudKernelVersion(): Promise<string> {
  const versions = (await fs.readdir("/boot"))
    .map((f) => /^vmlinuz-(.+-cloud-amd64)$/.exec(f)?.[1])
    .filter((v): v is string => v !== undefined)
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const v = versions[versions.length - 1];
  if (v === undefined) {
    throw new Error(
      "no /boot/vmlinuz-*-cloud-amd64: install linux-image-cloud-amd64 (scripts/install-deps.sh)",
    );
  }
  return v;
}

/** Returns the module files (relative to /lib/modules/<ver>) of `wanted` and their dependencies, dependencies first. */
export function moduleLoadOrder(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split("\n")) {
    const [file, rest = ""] = line.split(":");
    if (!file) continue;
    deps.set(file, rest.trim() === "" ? [] : rest.trim().split(/\s+/));
    byName.set(
      path
        .basename(file)
        .replace(/\.ko(\.[a-z]+)?$/, "")
        .replace(/-/g, "_"),
      file,
    );
  }
  const order: string[] = [];
  const visit = (file: string): void => {
    if (order.includes(file)) return;
    // modules.dep lists every (transitive) dependency; the last ones are the deepest.
    for (const d of [...(deps.get(file) ?? [])].reverse()) visit(d);
    order.push(file);
  };
  for (const name of wanted) {
    const file = byName.get(name);
    if (file === undefined) throw new Error(`kernel module ${name} is not in modules.dep`);
    visit(file);
  }
  return order;
}

/** Returns the tiny guest's kernel and initramfs, building the initramfs once per kernel version. */
export async function buildGuestImage(cacheRoot = GUEST_IMAGE_CACHE): Promise<GuestImage> {
  const kernelVersion = await cloudKernelVersion();
  const kernel = `/boot/vmlinuz-${kernelVersion}`;
  const modDir = `/lib/modules/${kernelVersion}`;
  const order = moduleLoadOrder(
    await fs.readFile(path.join(modDir, "modules.dep"), "utf8"),
    WANTED_MODULES,
  );
  for (const f of order) {
    if (!f.endsWith(".ko"))
      throw new Error(`module ${f} is compressed; the test guest needs plain .ko files`);
  }
  const busybox = "/bin/busybox";
  const key = createHash("sha256")
    .update(JSON.stringify([INIT_SCRIPT, UDHCPC_SCRIPT, order, (await fs.stat(busybox)).size]))
    .digest("hex")
    .slice(0, 12);
  const dir = path.join(cacheRoot, kernelVersion);
  const initrd = path.join(dir, `initrd-${key}.cpio.gz`);
  try {
    await fs.access(initrd);
    return { kernel, initrd, kernelVersion };
  } catch {
    // not built yet
  }

  const stage = await fs.mkdtemp(path.join(os.tmpdir(), "hv-guest-"));
  try {
    for (const d of ["bin", "etc", "lib/modules", "dev", "proc", "sys"]) {
      await fs.mkdir(path.join(stage, d), { recursive: true });
    }
    await fs.copyFile(busybox, path.join(stage, "bin", "busybox"));
    await fs.chmod(path.join(stage, "bin", "busybox"), 0o755);
    await fs.symlink("busybox", path.join(stage, "bin", "sh"));
    await fs.writeFile(path.join(stage, "init"), INIT_SCRIPT, { mode: 0o755 });
    await fs.writeFile(path.join(stage, "etc", "udhcpc.sh"), UDHCPC_SCRIPT, { mode: 0o755 });
    const names: string[] = [];
    for (const f of order) {
      const name = path.basename(f, ".ko");
      names.push(name);
      await fs.copyFile(path.join(modDir, f), path.join(stage, "lib", "modules", `${name}.ko`));
    }
    await fs.writeFile(path.join(stage, "lib", "modules", "load-order"), names.join("\n") + "\n");
    const list = await run(["sh", "-c", 'cd "$1" && find . -mindepth 1 | sort', "sh", stage]);
    if (list.code !== 0) throw new Error(`listing ${stage} failed: ${list.stderr}`);
    const cpio = await run(
      ["sh", "-c", 'cd "$1" && cpio -o -H newc --quiet -R 0:0', "sh", stage],
      list.stdout,
    );
    if (cpio.code !== 0) throw new Error(`cpio exited ${cpio.code}: ${cpio.stderr}`);
    await fs.mkdir(dir, { recursive: true });
    // Another test process may build the same image at the same time: write, then rename.
    const tmp = `${initrd}.tmp-${process.pid}`;
    await fs.writeFile(tmp, gzipSync(cpio.stdout));
    await fs.rename(tmp, initrd);
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
  }
  return { kernel, initrd, kernelVersion };
}

/** Returns the kernel command line of the test guest; `address` (CIDR) makes it static, otherwise DHCP. */
export function guestKernelArgs(
  opts: { address?: string; gateway?: string; hostname?: string; ping?: string[] } = {},
): string {
  return [
    "console=ttyS0",
    "panic=-1",
    "loglevel=4",
    ...(opts.address !== undefined ? [`hv.ip=${opts.address}`] : []),
    ...(opts.gateway !== undefined ? [`hv.gw=${opts.gateway}`] : []),
    ...(opts.hostname !== undefined ? [`hv.name=${opts.hostname}`] : []),
    ...(opts.ping !== undefined && opts.ping.length > 0 ? [`hv.ping=${opts.ping.join(",")}`] : []),
  ].join(" ");
}

export interface GuestReport {
  /** /init ran. */
  booted: boolean;
  /** eth0 is configured: the address it has ("198.18.150.10/24"). */
  networkReady?: string;
  /** The DHCP lease udhcpc got, as printed ("ip=... router=..."). */
  lease?: string;
  /** HTTP and echo services are listening. */
  serviceReady: boolean;
  poweredOff: boolean;
  /** Results of the `ping` checks asked for in the kernel arguments, by address. */
  pings: Record<string, "ok" | "failed">;
}

/** Returns what the guest reported on its serial console so far. */
export function parseGuestLog(text: string): GuestReport {
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  const after = (p: string): string | undefined =>
    lines
      .find((l) => l.startsWith(`${GUEST_LOG_PREFIX} ${p}`))
      ?.slice(GUEST_LOG_PREFIX.length + 1 + p.length);
  const ready = after("network-ready ip=");
  const lease = after("lease ");
  return {
    booted: after("init on kernel") !== undefined,
    ...(ready !== undefined ? { networkReady: ready.split(" ")[0] ?? "" } : {}),
    ...(lease !== undefined ? { lease } : {}),
    serviceReady: after("service-ready") !== undefined,
    poweredOff: after("power button pressed") !== undefined,
    pings: Object.fromEntries(
      lines
        .map((l) => new RegExp(`^${GUEST_LOG_PREFIX} ping (\\S+) (ok|failed)$`).exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1] ?? "", m[2] === "ok" ? "ok" : "failed"]),
    ),
  };
}
