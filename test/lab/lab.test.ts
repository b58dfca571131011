// Integration tests of the lab harness itself: real namespaces, real sshd, the real ssh client.
// Needs root and the packages of scripts/install-deps.sh.
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  LAB_LEASE_DIR,
  LAB_MAX_INDEX,
  LAB_STATE_ROOT,
  LAB_USERS,
  LAB_WAN_ADDRESS,
  checkLabPrerequisites,
  isProcessAlive,
  labInterfacePrefix,
  readLeases,
  runLocal,
  startLab,
  stopLab,
  type ExecResult,
  type Lab,
  type LabHost,
} from "../../lab";

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

// Unique to this file: other test files start labs of their own names.
const LAB = "labtest-harness";
const OTHER_LAB = "labtest-harness-b";

let lab: Lab;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "lab-test-"));
  lab = await startLab({ name: LAB, hosts: 2, wan: true });
});

afterAll(async () => {
  await stopLab(LAB);
  await stopLab(OTHER_LAB);
  await fs.rm(tmp, { recursive: true, force: true });
});

function hostAt(i: number): LabHost {
  const h = lab.hosts[i];
  if (h === undefined) throw new Error(`lab has no host at ${i}`);
  return h;
}

/** Returns a known_hosts file that trusts exactly this key for this address. */
async function knownHostsFor(address: string, keyLine: string): Promise<string> {
  const file = path.join(tmp, `known_hosts-${address}-${keyLine.slice(-8).replace(/\W/g, "_")}`);
  await fs.writeFile(file, `${address} ${keyLine}\n`);
  return file;
}

/** Runs a remote command with the real OpenSSH client, verifying the host key strictly. */
async function ssh(
  host: LabHost,
  user: string,
  command: string,
  opts: { hostKeyLine?: string; password?: string } = {},
): Promise<ExecResult> {
  const knownHosts = await knownHostsFor(host.address, opts.hostKeyLine ?? host.hostKeyLine);
  const auth =
    opts.password === undefined
      ? ["-i", host.privateKeyPath, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
      : [
          "-o",
          "PubkeyAuthentication=no",
          "-o",
          "PreferredAuthentications=password",
          "-o",
          "NumberOfPasswordPrompts=1",
        ];
  const env: Record<string, string> = {};
  if (opts.password !== undefined) {
    // OpenSSH asks SSH_ASKPASS for the password when told to; the program echoes $LAB_PASSWORD.
    const askpass = path.join(tmp, "askpass.sh");
    await fs.writeFile(askpass, '#!/bin/sh\nprintf "%s\\n" "$LAB_PASSWORD"\n', { mode: 0o700 });
    Object.assign(env, {
      SSH_ASKPASS: askpass,
      SSH_ASKPASS_REQUIRE: "force",
      DISPLAY: ":0",
      LAB_PASSWORD: opts.password,
    });
  }
  return runLocal(
    [
      "ssh",
      "-F",
      "/dev/null",
      ...auth,
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "ConnectTimeout=10",
      "-p",
      String(host.port),
      `${user}@${host.address}`,
      "--",
      command,
    ],
    { timeoutMs: 30_000, env },
  );
}

async function sshOk(host: LabHost, user: string, command: string): Promise<string> {
  const r = await ssh(host, user, command);
  expect(r, `ssh ${user}@${host.address} ${command}`).toMatchObject({ code: 0 });
  return r.stdout;
}

interface IpAddr {
  ifname: string;
  addr_info: Array<{ family: string; local: string; prefixlen: number }>;
}

async function rootNetnsNames(): Promise<string[]> {
  const r = await runLocal(["ip", "netns", "list"]);
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n !== "");
}

async function rootLinkNames(): Promise<string[]> {
  const r = await runLocal(["ip", "-j", "link", "show"]);
  return (JSON.parse(r.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}

/** Resolves once none of pids exists any more (an orphan's parent may take a moment to reap). */
async function waitGone(pids: number[], ms = 6_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left: number[] = [];
    for (const p of pids) {
      if (
        await fs.stat(`/proc/${p}`).then(
          () => true,
          () => false,
        )
      )
        left.push(p);
    }
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("lab prerequisites", () => {
  it("finds every program the lab and the provider run", async () => {
    await expect(checkLabPrerequisites()).resolves.toBeUndefined();
  });
});

describe("a lab of two hosts with a WAN", () => {
  it("describes hosts with their addresses, keys and WAN uplink", () => {
    const indices = lab.hosts.map((h) => h.index);
    expect(new Set(indices).size, "distinct allocated indices").toBe(2);
    for (const i of indices) expect(i).toBeGreaterThanOrEqual(1);
    expect(
      lab.hosts.map((h) => [h.name, h.netns, h.address, h.controllerAddress, h.wanAddress]),
    ).toEqual(
      indices.map((i) => [
        `h${i}`,
        `${LAB}-h${i}`,
        `198.18.${i}.2`,
        `198.18.${i}.1`,
        `198.19.${i}.2`,
      ]),
    );
    expect(hostAt(0).guestNet(0)).toBe("198.18.128");
    expect(() => hostAt(0).guestNet(128)).toThrow(/guest network 128 is out of range/);
    for (const h of lab.hosts) {
      expect(h.port).toBe(22);
      expect(h.hostKeyLine).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+$/);
      expect(h.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
      expect(h.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      expect(h.uplink).toBe("wan0");
      expect(h.wanGateway).toBe(`198.19.${h.index}.1`);
      expect(h.connection()).toEqual({
        host: h.address,
        port: 22,
        user: "root",
        privateKey: h.privateKey,
        hostKey: h.hostKeyLine,
      });
      expect(h.connection("hvsudo").user).toBe("hvsudo");
    }
    expect(hostAt(0).hostKeyLine, "each host has its own host key").not.toBe(hostAt(1).hostKeyLine);
    expect(lab.wan?.address).toBe(LAB_WAN_ADDRESS);
    expect(lab.wan?.netns).toBe(`${LAB}-wan`);
  });

  it("runs sshd that the real ssh client reaches with strict host key checking", async () => {
    for (const h of lab.hosts) {
      expect((await sshOk(h, "root", "hostname")).trim()).toBe(h.netns);
      expect((await sshOk(h, "root", "id -un")).trim()).toBe("root");
      // A clean root home: only the authorized key, none of the machine's shell start-up files.
      expect((await sshOk(h, "root", "ls -A /root")).trim()).toBe(".ssh");
      expect((await sshOk(h, "root", "ls -A /root/.ssh")).trim()).toBe("authorized_keys");
    }
  });

  it("fails closed when the client trusts another host's key", async () => {
    const r = await ssh(hostAt(0), "root", "true", { hostKeyLine: hostAt(1).hostKeyLine });
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it("shows each host only its own interfaces, in ip and in /sys", async () => {
    for (const h of lab.hosts) {
      const addrs = JSON.parse(await sshOk(h, "root", "ip -j addr show")) as IpAddr[];
      const v4 = addrs.map((a) => [
        a.ifname,
        a.addr_info.filter((i) => i.family === "inet").map((i) => `${i.local}/${i.prefixlen}`),
      ]);
      expect(v4).toEqual([
        ["lo", ["127.0.0.1/8"]],
        ["mgmt0", [`198.18.${h.index}.2/24`]],
        ["wan0", [`198.19.${h.index}.2/24`]],
      ]);
      const sys = await sshOk(h, "root", "ls /sys/class/net");
      expect(sys.trim().split(/\s+/).sort(), "sysfs is the namespace's own").toEqual([
        "lo",
        "mgmt0",
        "wan0",
      ]);
      const mac = (await sshOk(h, "root", "cat /sys/class/net/mgmt0/address")).trim();
      const ipMac = addrs.find((a) => a.ifname === "mgmt0");
      expect(ipMac, "mgmt0 in ip -j addr").toBeDefined();
      expect(JSON.stringify(ipMac)).toContain(mac);
    }
  });

  it("gives every host a /run and a /dev/shm of its own on tmpfs, as a real host has", async () => {
    for (const h of lab.hosts) {
      expect((await sshOk(h, "root", "stat -f -c %T /run")).trim(), h.name).toBe("tmpfs");
      expect((await sshOk(h, "root", "stat -c %a /run/lock")).trim(), h.name).toBe("1777");
      expect((await sshOk(h, "root", "stat -f -c %T /dev/shm")).trim(), h.name).toBe("tmpfs");
      expect((await sshOk(h, "root", "stat -c %a /dev/shm")).trim(), h.name).toBe("1777");
    }
  });

  it("keeps files of one host invisible to the other host and to the machine", async () => {
    const h1 = hostAt(0);
    const h2 = hostAt(1);
    const marker = `lab-isolation-${process.pid}`;
    for (const dir of [
      "/etc/pulumi-hypervisor",
      "/var/lib/pulumi-hypervisor",
      "/run",
      "/dev/shm",
      "/tmp",
      "/root",
    ]) {
      const file = `${dir}/${marker}`;
      const w = await h1.exec(
        ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", file],
        {
          stdin: "from h1\n",
        },
      );
      expect(w, `write ${file} on h1`).toMatchObject({ code: 0 });
      expect((await h1.exec(["cat", file])).stdout).toBe("from h1\n");
      expect((await ssh(h1, "root", `cat ${file}`)).stdout, `${file} over ssh on h1`).toBe(
        "from h1\n",
      );
      expect((await h2.exec(["test", "-e", file])).code, `${file} on h2`).toBe(1);
      expect((await ssh(h2, "root", `test -e ${file}`)).code, `${file} over ssh on h2`).toBe(1);
      await expect(fs.access(file), `${file} on the machine`).rejects.toThrow(/ENOENT/);
    }
  });

  it("creates the extra users inside the host only", async () => {
    const h1 = hostAt(0);
    expect((await h1.exec(["id", "-un", LAB_USERS.sudo])).stdout.trim()).toBe(LAB_USERS.sudo);
    expect((await h1.exec(["id", "-un", LAB_USERS.password])).stdout.trim()).toBe(
      LAB_USERS.password,
    );
    const machinePasswd = await fs.readFile("/etc/passwd", "utf8");
    expect(machinePasswd).not.toMatch(/^hvsudo:/m);
    expect(machinePasswd).not.toMatch(/^hvpass:/m);
    await expect(fs.access("/home/hvsudo")).rejects.toThrow(/ENOENT/);
  });

  it("lets hvsudo sudo without a password and hvpass only with its password", async () => {
    for (const h of lab.hosts) {
      expect(await ssh(h, LAB_USERS.sudo, "sudo -n true"), "hvsudo sudo -n").toMatchObject({
        code: 0,
        stderr: "",
      });
      expect((await sshOk(h, LAB_USERS.sudo, "sudo -n id -un")).trim()).toBe("root");
    }
    const h1 = hostAt(0);
    const noPassword = await ssh(h1, LAB_USERS.password, "sudo -n true");
    expect(noPassword.code, "hvpass sudo -n needs the password").toBe(1);
    expect(noPassword.stderr).toMatch(/password is required/);
    const withPassword = await ssh(
      h1,
      LAB_USERS.password,
      `printf '%s\\n' '${LAB_USERS.passwordSecret}' | sudo -S -k -p '' id -un`,
    );
    expect(withPassword).toMatchObject({ code: 0, stdout: "root\n" });
    const login = await ssh(h1, LAB_USERS.password, "id -un", {
      password: LAB_USERS.passwordSecret,
    });
    expect(login, "hvpass logs in with its password").toMatchObject({
      code: 0,
      stdout: "hvpass\n",
    });
    const wrong = await ssh(h1, LAB_USERS.password, "id -un", { password: "wrong-password" });
    expect(wrong.code, "a wrong password is refused").toBe(255);
  });

  it("routes each host's default through the WAN, which reaches no guest subnet", async () => {
    for (const h of lab.hosts) {
      const routes = JSON.parse((await h.exec(["ip", "-j", "route", "show", "default"])).stdout);
      expect(routes).toEqual([
        expect.objectContaining({ dst: "default", gateway: `198.19.${h.index}.1`, dev: "wan0" }),
      ]);
      const ping = await h.exec(["busybox", "ping", "-c", "1", "-W", "5", LAB_WAN_ADDRESS]);
      expect(ping, `ping ${LAB_WAN_ADDRESS} from ${h.name}`).toMatchObject({ code: 0 });
    }
    const wan = lab.wan;
    if (wan === undefined) throw new Error("lab has no WAN");
    expect((await wan.exec(["hostname"])).stdout.trim()).toBe(`${LAB}-wan`);
    const noRoute = await wan.exec(["ip", "route", "get", hostAt(0).address]);
    expect(noRoute.code, "the WAN has no route back to the hosts' other networks").not.toBe(0);
    expect(noRoute.stderr).toMatch(/unreachable/i);
    const wanLinks = (await wan.exec(["ls", "/sys/class/net"])).stdout.trim().split(/\s+/).sort();
    expect(wanLinks).toEqual(["lo", ...lab.hosts.map((h) => `to-${h.name}`)].sort());
  });

  it("keeps sysctl net.* per host", async () => {
    const h1 = hostAt(0);
    const h2 = hostAt(1);
    const machineBefore = await fs.readFile("/proc/sys/net/ipv4/ip_forward", "utf8");
    expect(await h1.exec(["sysctl", "-w", "net.ipv4.ip_forward=1"])).toMatchObject({ code: 0 });
    expect((await h1.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout).toBe("1\n");
    expect((await h2.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout).toBe("0\n");
    expect(await fs.readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(machineBefore);
  });

  it("counts exactly one sshd connection per new ssh connection", async () => {
    const h2 = hostAt(1);
    const before = await h2.sshConnectionCount();
    await sshOk(h2, "root", "true");
    expect(await h2.sshConnectionCount()).toBe(before + 1);
    await sshOk(h2, "root", "true");
    await sshOk(h2, LAB_USERS.sudo, "true");
    expect(await h2.sshConnectionCount()).toBe(before + 3);
    const log = await fs.readFile(h2.sshdLogPath, "utf8");
    expect(log).toContain(`Connection from ${h2.controllerAddress} port`);
  });

  it("leases each host index to one lab and refuses a second lab asking for a held one", async () => {
    const leases = await readLeases();
    for (const h of lab.hosts) expect(leases.get(h.index)?.lab, `lease of ${h.index}`).toBe(LAB);
    const held = hostAt(0).index;
    await expect(startLab({ name: OTHER_LAB, hosts: 1, firstIndex: held })).rejects.toThrow(
      `lab ${OTHER_LAB}: host index ${held} (198.18.${held}.0/24) is held by lab "${LAB}"`,
    );
    expect((await rootNetnsNames()).filter((n) => n.startsWith(`${OTHER_LAB}-`))).toEqual([]);
    await expect(fs.access(path.join(LAB_STATE_ROOT, OTHER_LAB))).rejects.toThrow(/ENOENT/);
    expect([...(await readLeases()).values()].filter((l) => l.lab === OTHER_LAB)).toEqual([]);
  });

  it("runs a second lab beside it on indices of its own", async () => {
    const other = await startLab({ name: OTHER_LAB, hosts: 1 });
    const h3 = other.hosts[0];
    if (h3 === undefined) throw new Error("the other lab has no host");
    const i = h3.index;
    expect(lab.hosts.map((h) => h.index)).not.toContain(i);
    expect([h3.name, h3.netns, h3.address, h3.controllerAddress]).toEqual([
      `h${i}`,
      `${OTHER_LAB}-h${i}`,
      `198.18.${i}.2`,
      `198.18.${i}.1`,
    ]);
    expect(other.wan).toBeUndefined();
    expect(h3.uplink).toBeUndefined();
    expect((await sshOk(h3, "root", "hostname")).trim()).toBe(`${OTHER_LAB}-h${i}`);
    const routes = JSON.parse((await h3.exec(["ip", "-j", "route"])).stdout) as unknown[];
    expect(routes, "no WAN, no default route").toEqual([
      expect.objectContaining({ dst: `198.18.${i}.0/24`, dev: "mgmt0" }),
    ]);
    await other.stop();
    expect((await readLeases()).has(i), "stop releases the lease").toBe(false);
    // Stopping the other lab left this one alone.
    for (const h of lab.hosts) {
      expect(await isProcessAlive(h.sshdPid), `${h.name} sshd`).toBe(true);
      expect((await sshOk(h, "root", "hostname")).trim()).toBe(h.netns);
    }
    expect(await rootNetnsNames()).toEqual(
      expect.arrayContaining([...lab.hosts.map((h) => h.netns), `${LAB}-wan`]),
    );
  });

  it("takes over a lease whose processes are gone", async () => {
    // A lease left by a process that died: pid 1's start time never matches "0".
    const leased = await readLeases();
    const free = Array.from({ length: LAB_MAX_INDEX }, (_, k) => LAB_MAX_INDEX - k).find(
      (k) => !leased.has(k),
    );
    if (free === undefined) throw new Error("no free index");
    await fs.writeFile(
      path.join(LAB_LEASE_DIR, String(free)),
      JSON.stringify({ lab: "gone", owners: [{ pid: 1, start: "0" }] }),
    );
    const other = await startLab({ name: OTHER_LAB, hosts: 1, firstIndex: free });
    expect(other.hosts[0]?.index).toBe(free);
    expect((await readLeases()).get(free)?.lab).toBe(OTHER_LAB);
    await other.stop();
  });

  it("replaces a leftover lab of the same name on start", async () => {
    const old = lab.hosts.map((h) => [h.holderPid, h.sshdPid]).flat();
    const oldKey = hostAt(0).hostKeyLine;
    lab = await startLab({ name: LAB, hosts: 2, wan: true });
    expect(await waitGone(old), "the old lab's processes").toEqual([]);
    expect(hostAt(0).hostKeyLine).not.toBe(oldKey);
    expect((await sshOk(hostAt(0), "root", "hostname")).trim()).toBe(hostAt(0).netns);
    expect(
      (await hostAt(0).exec(["test", "-e", "/etc/pulumi-hypervisor"])).code,
      "a new lab starts from the machine's /etc again",
    ).toBe(1);
  });

  it("stop removes every namespace, veth, process and the state dir", async () => {
    const h1 = hostAt(0);
    // Processes the tests start inside: one via exec, one daemonized over ssh (reaped by the host).
    const bg = await h1.exec(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"]);
    const viaSsh = await sshOk(
      h1,
      "root",
      "setsid sleep 600 >/dev/null 2>&1 < /dev/null & echo $!",
    );
    const started = [Number(bg.stdout.trim()), Number(viaSsh.trim())];
    for (const p of started) expect(await isProcessAlive(p), `sleep ${p} running`).toBe(true);
    const recorded = [
      ...lab.hosts.flatMap((h) => [h.holderPid, h.sshdPid]),
      ...(lab.wan ? [lab.wan.holderPid] : []),
    ];
    for (const p of recorded) expect(await isProcessAlive(p), `recorded pid ${p}`).toBe(true);

    await lab.stop();

    expect((await rootNetnsNames()).filter((n) => n.startsWith(`${LAB}-`))).toEqual([]);
    expect((await rootLinkNames()).filter((n) => n.startsWith(labInterfacePrefix(LAB)))).toEqual(
      [],
    );
    expect(await waitGone([...recorded, ...started]), "pids left after stop").toEqual([]);
    await expect(fs.access(lab.stateDir)).rejects.toThrow(/ENOENT/);
    // No other mount namespace on the machine still pins one of the lab's network namespaces.
    const pinned: string[] = [];
    for (const entry of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const info = await fs.readFile(`/proc/${entry}/mountinfo`, "utf8").catch(() => "");
      if (info.includes(`/run/netns/${LAB}-`)) pinned.push(entry);
    }
    expect(pinned, "processes whose mounts still hold a lab netns").toEqual([]);
    // Stopping again is a no-op.
    await expect(stopLab(LAB)).resolves.toBeUndefined();
  });
});
