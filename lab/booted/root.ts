// The root filesystem every booted lab host starts from: Debian 12 from debootstrap, cached on the
// machine under a hash of the recipe, built in a temporary directory and renamed into place.
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { exists, isAlive, runLocal, runOk, sleep, tailOf, whichProgram } from "./run";
import { BOOTED_STATE_ROOT } from "./slots";

export const ROOT_CACHE_DIR = "/var/cache/pulumi-hypervisor-lab";

/** What goes into the root; a change here (or to customizeRoot) builds a new cached root. */
export const ROOT_RECIPE = {
  suite: "bookworm",
  variant: "minbase",
  packages: [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "ifupdown",
    "iproute2",
    "dnsmasq-base",
    "nftables",
    "iptables",
    "socat",
    "procps",
    "psmisc",
    "sudo",
    "busybox-static",
    "kmod",
    "iputils-ping",
    "netbase",
    "qemu-system-x86",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "udev",
  ],
  // Bumped when customizeRoot changes what it writes.
  customization: 2,
} as const;

/** The Debian packages the machine needs to build and boot these hosts. */
export const MACHINE_PACKAGES = [
  "debootstrap",
  "systemd-container",
  "e2fsprogs",
  "util-linux",
  "iproute2",
  "openssh-client",
  "qemu-system-x86",
] as const;

const BUILD_TIMEOUT_MS = 20 * 60_000;
const LOCK_WAIT_MS = 25 * 60_000;

export interface CachedRoot {
  /** The root directory; read-only by convention: hosts overlay it. */
  dir: string;
  hash: string;
  /** Milliseconds this call spent building (0 when the root was cached). */
  buildMs: number;
}

/** Returns the hex hash that names the cached root of the recipe. */
export function hashRecipe(recipe: typeof ROOT_RECIPE = ROOT_RECIPE): string {
  return createHash("sha256").update(JSON.stringify(recipe)).digest("hex").slice(0, 16);
}

/** Returns the Debian mirror of suite as apt on this machine is configured, from its sources. */
export async function findAptMirror(suite: string): Promise<string> {
  const files = ["/etc/apt/sources.list"];
  const dir = "/etc/apt/sources.list.d";
  for (const f of (await fs.readdir(dir).catch(() => [])).sort()) {
    if (f.endsWith(".list") || f.endsWith(".sources")) files.push(path.join(dir, f));
  }
  for (const file of files) {
    const text = await fs.readFile(file, "utf8").catch(() => "");
    const mirror = file.endsWith(".sources")
      ? mirrorFromDeb822(text, suite)
      : mirrorFromOneLine(text, suite);
    if (mirror !== undefined) return mirror;
  }
  throw new Error(
    `booted lab: no apt source for Debian ${suite} main in ${files.join(", ")}; ` +
      `debootstrap uses the machine's own mirror and no other`,
  );
}

/** Returns the URI of the first "deb" stanza of a deb822 .sources text serving suite main. */
export function mirrorFromDeb822(text: string, suite: string): string | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split("\n")) {
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m?.[1] !== undefined && m[2] !== undefined) fields.set(m[1].toLowerCase(), m[2].trim());
    }
    const words = (k: string): string[] => (fields.get(k) ?? "").split(/\s+/).filter(Boolean);
    if (fields.get("enabled") === "no") continue;
    if (!words("types").includes("deb")) continue;
    if (!words("suites").includes(suite) || !words("components").includes("main")) continue;
    const uri = words("uris")[0];
    if (uri !== undefined) return uri;
  }
  return undefined;
}

/** Returns the URI of the first one-line "deb" entry of a sources.list text serving suite main. */
export function mirrorFromOneLine(text: string, suite: string): string | undefined {
  for (const raw of text.split("\n")) {
    const line = raw
      .replace(/#.*/, "")
      .replace(/\[[^\]]*\]/, "")
      .trim();
    const [type, uri, dist, ...components] = line.split(/\s+/);
    if (type === "deb" && uri !== undefined && dist === suite && components.includes("main")) {
      return uri;
    }
  }
  return undefined;
}

/** Returns the cached root of the recipe, building it first when the machine has none. */
export async function ensureRoot(
  log: (line: string) => void = () => undefined,
): Promise<CachedRoot> {
  const hash = hashRecipe();
  const rootsDir = path.join(ROOT_CACHE_DIR, "roots");
  const final = path.join(rootsDir, hash);
  if (await exists(path.join(final, "root")))
    return { dir: path.join(final, "root"), hash, buildMs: 0 };
  await fs.mkdir(rootsDir, { recursive: true });
  const release = await takeBuildLock(path.join(rootsDir, `${hash}.lock`));
  try {
    // Another process may have finished the same build while this one waited for the lock.
    if (await exists(path.join(final, "root"))) {
      return { dir: path.join(final, "root"), hash, buildMs: 0 };
    }
    const started = Date.now();
    const tmp = path.join(rootsDir, `.build-${hash}-${process.pid}`);
    await removeTree(tmp);
    await fs.mkdir(tmp, { recursive: true });
    try {
      await debootstrap(path.join(tmp, "root"), path.join(tmp, "build.log"), log);
      await customizeRoot(path.join(tmp, "root"));
      await fs.writeFile(
        path.join(tmp, "recipe.json"),
        JSON.stringify(ROOT_RECIPE, null, 2) + "\n",
      );
      await fs.rename(tmp, final);
    } catch (e) {
      await removeTree(tmp);
      throw e;
    }
    await pruneRoots(rootsDir, hash);
    return { dir: path.join(final, "root"), hash, buildMs: Date.now() - started };
  } finally {
    await release();
  }
}

/** Throws naming the programs a root build needs that `which` does not find, and the fix. */
export async function requireBuildPrograms(
  which: (program: string) => Promise<string | undefined> = whichProgram,
): Promise<void> {
  const missing: string[] = [];
  for (const program of ["debootstrap", "chroot"]) {
    if ((await which(program)) === undefined) missing.push(program);
  }
  if (missing.length > 0) {
    throw new Error(
      `booted lab: ${missing.join(", ")} not found; install the machine packages ` +
        `(${MACHINE_PACKAGES.join(" ")}) with: bash scripts/install-deps.sh`,
    );
  }
}

async function debootstrap(
  target: string,
  logFile: string,
  log: (line: string) => void,
): Promise<void> {
  await requireBuildPrograms();
  const mirror = await findAptMirror(ROOT_RECIPE.suite);
  log(`booted lab: debootstrap ${ROOT_RECIPE.suite} from ${mirror} into ${target}`);
  const argv = [
    "debootstrap",
    `--variant=${ROOT_RECIPE.variant}`,
    `--include=${ROOT_RECIPE.packages.join(",")}`,
    ROOT_RECIPE.suite,
    target,
    mirror,
  ];
  const r = await runLocal(argv, { timeoutMs: BUILD_TIMEOUT_MS });
  await fs.writeFile(logFile, r.stdout + r.stderr);
  if (r.code !== 0) {
    const debootstrapLog = await fs
      .readFile(path.join(target, "debootstrap", "debootstrap.log"), "utf8")
      .catch(() => "");
    throw new Error(
      `booted lab: debootstrap ${ROOT_RECIPE.suite} from ${mirror} exited ${r.code}: ` +
        tailOf(r.stderr + r.stdout + debootstrapLog),
    );
  }
}

// Makes the debootstrapped tree a template: no identity of its own (machine-id, host keys,
// hostname), the uplink configuration read from interfaces.d, and no apt caches.
async function customizeRoot(root: string): Promise<void> {
  const at = (p: string): string => path.join(root, p);
  await fs.writeFile(at("etc/machine-id"), "");
  await fs.rm(at("var/lib/dbus/machine-id"), { force: true });
  for (const f of await fs.readdir(at("etc/ssh"))) {
    if (f.startsWith("ssh_host_")) await fs.rm(at(`etc/ssh/${f}`));
  }
  await fs.mkdir(at("etc/ssh/sshd_config.d"), { recursive: true });
  // Each host has one ed25519 key; sshd would otherwise log a missing RSA and ECDSA key at start.
  await fs.writeFile(
    at("etc/ssh/sshd_config.d/lab-host-key.conf"),
    "HostKey /etc/ssh/ssh_host_ed25519_key\n",
  );
  await fs.rm(at("etc/hostname"), { force: true });
  await fs.mkdir(at("etc/network/interfaces.d"), { recursive: true });
  await fs.writeFile(
    at("etc/network/interfaces"),
    "# The loopback network interface; the uplink is in interfaces.d.\n" +
      "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
  );
  // A Debian installer writes the locale; without it pam_env logs an error at every SSH login.
  await fs.writeFile(at("etc/default/locale"), "LANG=C.UTF-8\n");
  // The virtual machine boots this initramfs under TCG, where every module udev loads for the
  // emulated PC costs seconds: only what mounting the virtio root needs goes in.
  await fs.writeFile(at("etc/initramfs-tools/conf.d/lab-vm.conf"), "MODULES=list\n");
  await fs.appendFile(at("etc/initramfs-tools/modules"), "virtio_pci\nvirtio_blk\n");
  await runOk(["chroot", root, "update-initramfs", "-u", "-k", "all"], { timeoutMs: 300_000 });
  await runOk(["chroot", root, "apt-get", "clean"]);
  await fs.rm(at("var/lib/apt/lists"), { recursive: true, force: true });
  await fs.mkdir(at("var/lib/apt/lists/partial"), { recursive: true });
}

// A lock file holding the builder's pid; a lock whose pid is gone is taken over.
async function takeBuildLock(file: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: "wx" });
      return () => fs.rm(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const holder = Number((await fs.readFile(file, "utf8").catch(() => "")).trim());
    if (!Number.isInteger(holder) || holder <= 0 || !(await isAlive(holder))) {
      await fs.rm(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`booted lab: root build lock ${file} still held by pid ${holder}`);
    }
    await sleep(1000);
  }
}

/** Removes cached roots (~450 MB each) no host uses, except keep, and builds whose process died. */
export async function pruneRoots(rootsDir: string, keep: string): Promise<void> {
  const inUse = new Set<string>([keep]);
  const hostsDir = path.join(BOOTED_STATE_ROOT, "hosts");
  for (const name of await fs.readdir(hostsDir).catch(() => [])) {
    const text = await fs.readFile(path.join(hostsDir, name, "host.json"), "utf8").catch(() => "");
    const m = /"rootHash":\s*"([0-9a-f]+)"/.exec(text);
    if (m?.[1] !== undefined) inUse.add(m[1]);
  }
  for (const entry of await fs.readdir(rootsDir)) {
    const build = /^\.build-[0-9a-f]+-(\d+)$/.exec(entry);
    const stale =
      build?.[1] !== undefined
        ? !(await isAlive(Number(build[1])))
        : /^[0-9a-f]{16}$/.test(entry) && !inUse.has(entry);
    if (stale) await removeTree(path.join(rootsDir, entry));
  }
}

async function removeTree(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}
