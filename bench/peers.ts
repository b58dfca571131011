// The tools users would pick instead, on the same lab hosts and the same job: Ansible (Debian's
// ansible-core, tuned and with its defaults) and the floor (one OpenSSH connection per host running
// one script). Each runs as its own process tree in a cgroup, so its controller CPU is counted.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { LabHost } from "../lab";
import { machineBusyUs, type CpuAccounting, type CpuGroup } from "./cgroup";
import type { Peer } from "./options";
import { hostJob, jobFiles, type HostJob } from "./job";
import { relaysBytes, type Relay } from "./relay";
import { SshdLogCounter } from "./sshd-log";

/** What one run of a tool cost, counted on the controller (cgroup) and on the hosts (sshd). */
export interface ToolRun {
  wallMs: number;
  controllerCpuUs?: number;
  hostCpuUs?: number;
  /** Busy time of all the machine's CPUs (/proc/stat), microseconds. */
  machineCpuUs?: number;
  connections: number;
  sessions: number;
  /** Bytes the relays passed on toward the hosts; undefined without relays (0 ms). */
  bytesToHosts?: number;
  /** Ansible's PLAY RECAP changed= summed over hosts. */
  changed?: number;
}

export interface PeerResult {
  peer: Peer;
  delayMs: number;
  apply: ToolRun;
  /** The second run (Ansible only): must change nothing. */
  noop?: ToolRun;
  /** Which of the bench's interleaved runs (--repeat) this is, from 1; absent: the only one. */
  trial?: number;
}

/** Where a tool reaches one host: directly or through that host's relay. */
export interface Target {
  h: LabHost;
  host: string;
  port: number;
  counter: SshdLogCounter;
  job: HostJob;
  /** The relay in front of the host's sshd, when there is one. */
  relay?: Relay;
}

/** Returns the targets of a run: each lab host through its relay when there is one. */
export function targets(hosts: LabHost[], resources: number, relays: Map<string, Relay>): Target[] {
  return hosts.map((h) => {
    const r = relays.get(h.name);
    return {
      h,
      host: r ? r.host : h.address,
      port: r ? r.port : h.port,
      counter: new SshdLogCounter(h.sshdLogPath),
      job: hostJob(h.guestNet(0), resources),
      ...(r ? { relay: r } : {}),
    };
  });
}

export interface Measure {
  acct: CpuAccounting | undefined;
  hostGroups: CpuGroup[];
}

let serial = 0;

async function sum(groups: CpuGroup[]): Promise<number> {
  let t = 0;
  for (const g of groups) t += await g.usageUsec();
  return t;
}

// Runs argv with its process tree in a new cgroup (it joins the group before exec), measures it.
async function measured(
  m: Measure,
  group: CpuGroup | undefined,
  ts: Target[],
  argv: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: string },
): Promise<ToolRun & { stdout: string; stderr: string; code: number | null }> {
  const cpuBefore = group ? await group.usageUsec() : 0;
  const before = ts.map((t) => t.counter.update());
  const hostBefore = await sum(m.hostGroups);
  const relays = ts.flatMap((t) => (t.relay ? [t.relay] : []));
  const bytesBefore = relaysBytes(relays);
  const machineBefore = machineBusyUs();
  const t0 = performance.now();
  const wrapped = group
    ? ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', group.dir, ...argv]
    : argv;
  const r = await new Promise<{ stdout: string; stderr: string; code: number | null }>(
    (resolve, reject) => {
      const c = spawn(wrapped[0] ?? "", wrapped.slice(1), {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      c.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
      c.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
      c.on("error", reject);
      c.on("close", (code) => resolve({ stdout, stderr, code }));
      c.stdin.end(opts.stdin ?? "");
    },
  );
  const wallMs = performance.now() - t0;
  const machineCpuUs = machineBusyUs() - machineBefore;
  const controllerCpuUs = group ? (await group.usageUsec()) - cpuBefore : undefined;
  const hostCpuUs = m.acct ? (await sum(m.hostGroups)) - hostBefore : undefined;
  const bytesAfter = relaysBytes(relays);
  const after = ts.map((t) => t.counter.update());
  for (const t of ts) t.counter.close();
  let connections = 0;
  let sessions = 0;
  after.forEach((a, i) => {
    connections += a.connections - (before[i]?.connections ?? 0);
    sessions += a.sessions - (before[i]?.sessions ?? 0);
  });
  return {
    ...r,
    wallMs,
    ...(controllerCpuUs !== undefined ? { controllerCpuUs } : {}),
    ...(hostCpuUs !== undefined ? { hostCpuUs } : {}),
    machineCpuUs,
    ...(bytesBefore !== undefined && bytesAfter !== undefined
      ? { bytesToHosts: bytesAfter.toTarget - bytesBefore.toTarget }
      : {}),
    connections,
    sessions,
  };
}

function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Returns the floor's script for one host: the job's end state, built once, no checks. */
export function floorScript(job: HostJob): string {
  const f = jobFiles(job);
  const lines = ["set -e"];
  for (const b of job.bridges) {
    lines.push(
      `ip link add name ${b.name} type bridge`,
      `ip addr add ${b.address} dev ${b.name}`,
      `ip link set dev ${b.name} up`,
    );
  }
  for (const t of job.taps) {
    lines.push(
      `ip tuntap add dev ${t.name} mode tap`,
      `ip link set dev ${t.name} master ${t.bridge}`,
      `ip link set dev ${t.name} up`,
    );
  }
  if (f.dnsmasq) {
    const d = f.dnsmasq;
    lines.push(
      `mkdir -p ${d.dirs.join(" ")}`,
      `printf '%s' ${sq(d.conf)} > ${d.configPath}`,
      `: > ${d.hostsPath}`,
      `dnsmasq --conf-file=${d.configPath}`,
    );
  }
  if (f.nat) {
    lines.push(`printf '%s' ${sq(f.nat.ruleset)} | nft -f -`, "sysctl -qw net.ipv4.ip_forward=1");
  }
  return lines.join("\n") + "\n";
}

async function knownHosts(dir: string, ts: Target[]): Promise<string> {
  const file = path.join(dir, "known_hosts");
  await writeFile(
    file,
    ts
      .map((t) => `${t.port === 22 ? t.host : `[${t.host}]:${t.port}`} ${t.h.hostKeyLine.trim()}\n`)
      .join(""),
  );
  return file;
}

/** Runs the floor: one `ssh` per host, all hosts at once, each piping one script to `sh`. */
export async function runFloor(m: Measure, ts: Target[], delayMs: number): Promise<PeerResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bench-floor-"));
  try {
    const kh = await knownHosts(dir, ts);
    // One process tree for all hosts (sh starting one ssh per host), so one cgroup counts them.
    const script = ts
      .map(
        (t, i) =>
          `ssh -o BatchMode=yes -o UserKnownHostsFile=${kh} -o StrictHostKeyChecking=yes ` +
          `-i ${t.h.privateKeyPath} -p ${t.port} root@${t.host} sh -s < ${dir}/job-${i}.sh & p${i}=$!; `,
      )
      .join("");
    for (const [i, t] of ts.entries())
      await writeFile(path.join(dir, `job-${i}.sh`), floorScript(t.job));
    const group = m.acct ? await m.acct.group(`floor-${++serial}`) : undefined;
    const r = await measured(
      m,
      group,
      ts,
      [
        "sh",
        "-c",
        `${script} fail=0; ${ts.map((_, i) => `wait $p${i} || fail=1; `).join("")}exit $fail`,
      ],
      {},
    );
    if (r.code !== 0) throw new Error(`floor: a host's script failed (${r.code}): ${r.stderr}`);
    return { peer: "floor", delayMs, apply: pick(r) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function pick(r: ToolRun): ToolRun {
  const {
    wallMs,
    controllerCpuUs,
    hostCpuUs,
    machineCpuUs,
    bytesToHosts,
    connections,
    sessions,
    changed,
  } = r;
  return {
    wallMs,
    ...(controllerCpuUs !== undefined ? { controllerCpuUs } : {}),
    ...(hostCpuUs !== undefined ? { hostCpuUs } : {}),
    ...(machineCpuUs !== undefined ? { machineCpuUs } : {}),
    ...(bytesToHosts !== undefined ? { bytesToHosts } : {}),
    connections,
    sessions,
    ...(changed !== undefined ? { changed } : {}),
  };
}

/** Returns the lines of ansible-playbook's output that say what failed (each cut short), and the recap. */
export function ansibleFailures(stdout: string): string {
  const lines = stdout.split("\n");
  const bad = lines
    .filter((l) => /^(fatal|failed):/.test(l) || /"msg": "[^"]/.test(l))
    .map((l) => {
      const msg = /"msg": "((?:[^"\\]|\\.)*)"/.exec(l)?.[1];
      return `${l.slice(0, l.indexOf("=>") > 0 ? l.indexOf("=>") : 80)}${msg ? ` msg: ${msg.slice(0, 300)}` : ""}`;
    })
    .slice(0, 6);
  const recap = stdout.slice(stdout.lastIndexOf("PLAY RECAP")).trim();
  return `${bad.join("\n")}\n${recap}\n`;
}

/** Returns changed= summed over the PLAY RECAP lines of ansible-playbook's output. */
export function recapChanged(stdout: string): number | undefined {
  const recap = stdout.slice(stdout.lastIndexOf("PLAY RECAP"));
  const counts = [...recap.matchAll(/\bchanged=(\d+)/g)].map((x) => Number(x[1]));
  return counts.length > 0 ? counts.reduce((a, b) => a + b, 0) : undefined;
}

/** Returns the ansible.cfg of a configuration: "tuned" (pipelining, ControlPersist) or defaults. */
export function ansibleConfig(peer: Peer, controlDir: string): string {
  const lines = ["[defaults]", "inventory = inventory.json", "retry_files_enabled = False"];
  if (peer === "ansible-tuned") lines.push("interpreter_python = /usr/bin/python3");
  lines.push("", "[ssh_connection]", `control_path_dir = ${controlDir}`);
  if (peer === "ansible-tuned") {
    lines.push("pipelining = True", "ssh_args = -o ControlMaster=auto -o ControlPersist=60s");
  }
  return lines.join("\n") + "\n";
}

/** Returns the inventory: every target with its connection and its job as host variables. */
export function ansibleInventory(ts: Target[], knownHostsFile: string): unknown {
  const hosts: Record<string, unknown> = {};
  for (const t of ts) {
    const f = jobFiles(t.job);
    const d = t.job.dnsmasq;
    const n = t.job.nat;
    hosts[t.h.name] = {
      ansible_host: t.host,
      ansible_port: t.port,
      ansible_user: "root",
      ansible_ssh_private_key_file: t.h.privateKeyPath,
      ansible_ssh_common_args: `-o UserKnownHostsFile=${knownHostsFile} -o StrictHostKeyChecking=yes`,
      bridges: t.job.bridges,
      taps: t.job.taps,
      ...(d && f.dnsmasq
        ? {
            dnsmasq: {
              ...d,
              netmask: netmask(Number(d.subnet.split("/")[1])),
              dirs: f.dnsmasq.dirs,
              config_path: f.dnsmasq.configPath,
              hosts_path: f.dnsmasq.hostsPath,
              pid_path: `${f.dnsmasq.dirs[1]}/dnsmasq.pid`,
              leases_path: `${f.dnsmasq.dirs[2]}/dnsmasq.leases`,
            },
          }
        : {}),
      ...(n && f.nat
        ? {
            nat: {
              name: n.name,
              table: f.nat.table,
              source_cidr: n.sourceCidr,
              out_interface: n.outInterface,
            },
          }
        : {}),
    };
  }
  return { all: { hosts } };
}

function netmask(bits: number): string {
  const m = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 255).join(".");
}

/** Runs the playbook twice (apply, then the checking no-op) in one configuration. */
export async function runAnsible(
  m: Measure,
  ts: Target[],
  peer: Peer,
  delayMs: number,
  afterApply: () => Promise<void>,
): Promise<PeerResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bench-ansible-"));
  const src = path.join(__dirname, "peers", "ansible");
  try {
    const cp = path.join(dir, "cp");
    await mkdir(cp);
    const kh = await knownHosts(dir, ts);
    for (const f of ["playbook.yml", "dnsmasq.conf.j2", "nat.nft.j2"]) {
      await writeFile(path.join(dir, f), await readFile(path.join(src, f)));
    }
    await writeFile(path.join(dir, "ansible.cfg"), ansibleConfig(peer, cp));
    await writeFile(path.join(dir, "inventory.json"), JSON.stringify(ansibleInventory(ts, kh)));
    const env = {
      ...process.env,
      ANSIBLE_CONFIG: path.join(dir, "ansible.cfg"),
      ANSIBLE_NOCOLOR: "1",
    };
    // One group for both runs: the ControlPersist master started by the first serves the second.
    const group = m.acct ? await m.acct.group(`${peer}-${++serial}`) : undefined;
    const run = async (what: string): Promise<ToolRun> => {
      const r = await measured(m, group, ts, ["ansible-playbook", "playbook.yml"], {
        cwd: dir,
        env,
      });
      if (r.code !== 0) {
        throw new Error(
          `${peer} ${what} failed (exit ${r.code}): ` +
            `${ansibleFailures(r.stdout)}${r.stderr.trim().slice(-600)}`,
        );
      }
      const changed = recapChanged(r.stdout);
      return pick({ ...r, ...(changed !== undefined ? { changed } : {}) });
    };
    const apply = await run("apply");
    await afterApply();
    const noop = await run("no-op");
    // ControlPersist masters outlive the playbook: end them (ssh -O exit) before the next tool.
    for (const t of ts) {
      await new Promise<void>((resolve) => {
        const c = spawn(
          "ssh",
          ["-o", `ControlPath=${cp}/%C`, "-O", "exit", "-p", String(t.port), `root@${t.host}`],
          { stdio: "ignore" },
        );
        c.on("close", () => resolve());
        c.on("error", () => resolve());
      });
    }
    return { peer, delayMs, apply, noop };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Makes sure ansible-playbook is there: installs Debian's ansible-core, or throws saying how. */
export async function ensureAnsible(log: (line: string) => void): Promise<void> {
  const has = (): Promise<boolean> =>
    new Promise((resolve) => {
      const c = spawn("ansible-playbook", ["--version"], { stdio: "ignore" });
      c.on("error", () => resolve(false));
      c.on("close", (code) => resolve(code === 0));
    });
  if (await has()) return;
  log("ansible-playbook is missing: apt-get install -y ansible-core");
  const apt = (args: string[]): Promise<number | null> =>
    new Promise((resolve) => {
      const c = spawn("apt-get", args, {
        stdio: ["ignore", "ignore", "inherit"],
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      });
      c.on("error", () => resolve(null));
      c.on("close", resolve);
    });
  const install = ["install", "-y", "--no-install-recommends", "ansible-core"];
  let code = await apt(install);
  // A fresh machine may not have package lists yet.
  if (code !== 0 && (await apt(["update"])) === 0) code = await apt(install);
  if (code !== 0 || !(await has())) {
    throw new Error(
      "the bench compares with Ansible and could not install it (apt-get install -y ansible-core " +
        `exited ${code}); install ansible-core, or run with --peers floor or --peers none`,
    );
  }
}
