// `npm run lab [up|down|status|reboot HOST]`: the main job on the built-in lab.
// up: starts two booted Debian 12 hosts (systemd-nspawn containers with systemd as PID 1, each
// with a WAN link whose far end is this machine; see lab/booted/README.md), applies examples/lab to
// them (with `pulumi up` when the Pulumi CLI is installed, otherwise through the engine-protocol
// driver: the dynamic-provider plugin driven the way the engine drives it), then prints what exists
// on each host. reboot HOST: `systemctl reboot` on one host and shows what came back by itself.
// down: destroys what was applied and removes the hosts with their disks.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { stopLab } from "../lab";
import type { BootedHost } from "../lab/booted/booted-host";
import { readHostRecord } from "../lab/booted/booted-host";
import { attachHost, startHost } from "../lab/booted/index";
import { isAlive } from "../lab/booted/run";
import { DynamicProviderPlugin, Engine, type ResourceState } from "../lab/engine/engine";
import { runProgramWithMocks } from "../lab/engine/mocks";

// The namespace lab this command used before the booted hosts: `down` removes a leftover one.
const NAMESPACE_LAB = "lab";
const HOST_NAMES = ["lab-1", "lab-2"];
const ROOT = path.resolve(__dirname, "..");
const DIR = path.join(ROOT, ".lab");
const HOSTS_FILE = path.join(DIR, "hosts.json");
const DRIVER_STATE = path.join(DIR, "driver-state.json");
const STACK = "lab";

function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function hasPulumiCli(): boolean {
  return spawnSync("pulumi", ["version"], { stdio: "ignore" }).status === 0;
}

function pulumiEnv(): NodeJS.ProcessEnv {
  mkdirSync(path.join(DIR, "state"), { recursive: true });
  return {
    ...process.env,
    PULUMI_BACKEND_URL: `file://${path.join(DIR, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: process.env["PULUMI_CONFIG_PASSPHRASE"] ?? "lab",
    HYPERVISOR_LAB_HOSTS: HOSTS_FILE,
  };
}

function pulumi(args: string[]): void {
  execFileSync("pulumi", args, { cwd: ROOT, env: pulumiEnv(), stdio: "inherit" });
}

async function loadProgram(): Promise<Awaited<ReturnType<typeof runProgramWithMocks>>> {
  process.env["HYPERVISOR_LAB_HOSTS"] = HOSTS_FILE;
  const entry = require.resolve("../examples/lab/index.ts");
  delete require.cache[entry];
  return runProgramWithMocks(() => require(entry) as unknown, {
    project: "hypervisor-lab",
    stack: STACK,
  });
}

async function withPlugin<T>(f: (engine: Engine) => Promise<T>): Promise<T> {
  const plugin = await DynamicProviderPlugin.start({ cwd: ROOT });
  try {
    await plugin.configure({});
    return await f(new Engine(plugin));
  } finally {
    await plugin.stop();
  }
}

function saveState(engine: Engine): void {
  writeFileSync(DRIVER_STATE, JSON.stringify([...engine.state.values()], null, 2), { mode: 0o600 });
}

async function applyWithDriver(): Promise<void> {
  const resources = await loadProgram();
  const specs = resources.map((r) => ({
    type: r.type,
    name: r.name,
    inputs: r.inputs,
    dependsOn: r.dependsOn,
  }));
  await withPlugin(async (engine) => {
    if (existsSync(DRIVER_STATE)) {
      for (const s of JSON.parse(readFileSync(DRIVER_STATE, "utf8")) as ResourceState[]) {
        engine.state.set(s.name, s);
      }
    }
    try {
      // As `pulumi up --refresh`: what a reboot (or a hand) removed is recreated, not kept as "same".
      for (const s of (await engine.refresh()).steps) {
        if (s.op !== "same") out(`  ${s.op.padEnd(8)} ${s.name}`);
      }
      // As `pulumi up`: each resource's step once those it depends on are done, beside the others.
      const { steps } = await engine.up(specs, { atOnce: true });
      for (const s of steps) out(`  ${s.op.padEnd(8)} ${s.name}`);
    } finally {
      saveState(engine);
    }
  });
}

async function destroyWithDriver(): Promise<void> {
  if (!existsSync(DRIVER_STATE)) return;
  await withPlugin(async (engine) => {
    for (const s of JSON.parse(readFileSync(DRIVER_STATE, "utf8")) as ResourceState[]) {
      engine.state.set(s.name, s);
    }
    try {
      const { steps } = await engine.destroy({ atOnce: true });
      for (const s of steps) out(`  ${s.op.padEnd(8)} ${s.name}`);
    } finally {
      saveState(engine);
    }
  });
  rmSync(DRIVER_STATE);
}

// What each host has of the provider's work, from the host's own tools.
const PROBES: Array<[string, string[]]> = [
  ["bridges", ["ip", "-br", "link", "show", "type", "bridge"]],
  ["addresses", ["ip", "-br", "addr", "show"]],
  ["bridge ports", ["bridge", "link", "show"]],
  ["/etc/qemu/bridge.conf", ["sh", "-c", "cat /etc/qemu/bridge.conf 2>/dev/null || true"]],
  ["nftables", ["nft", "list", "ruleset"]],
  ["dnsmasq and qemu processes", ["sh", "-c", "pgrep -a '^(dnsmasq|qemu-system)' || true"]],
  [
    "the provider's systemd units (systemctl status UNIT, journalctl -u UNIT)",
    ["systemctl", "list-units", "--all", "--plain", "--no-legend", "pulumi-hypervisor-*"],
  ],
  [
    "the provider's files in /etc (units, boot scripts, configs)",
    [
      "sh",
      "-c",
      "find /etc/systemd/system -maxdepth 1 -name 'pulumi-hypervisor-*' 2>/dev/null; " +
        "find /etc/pulumi-hypervisor -type f 2>/dev/null; true",
    ],
  ],
];

async function show(hosts: BootedHost[]): Promise<void> {
  for (const h of hosts) {
    out(`\n== ${h.name} (${h.address}, WAN ${h.wan?.address ?? "none"}) ==`);
    for (const [title, argv] of PROBES) {
      const r = await h.ssh(argv);
      const text = (r.code === 0 ? r.stdout : `${r.stdout}${r.stderr}`).trim();
      out(`-- ${title}:${text ? `\n${text}` : " (none)"}`);
    }
  }
}

/** Returns what of the provider's work a host has, by kind, without pids or counters. */
async function summarize(h: BootedHost): Promise<Record<string, string[]>> {
  const lines = async (argv: string[]): Promise<string[]> =>
    (await h.ssh(argv)).stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .sort();
  return {
    bridges: await lines(["sh", "-c", "ip -br link show type bridge | cut -d' ' -f1"]),
    taps: await lines(["sh", "-c", "ip -br link show type tun | cut -d' ' -f1"]),
    "nft tables": await lines(["nft", "list", "tables"]),
    processes: await lines(["sh", "-c", "pgrep -l '^(dnsmasq|qemu-system)' | cut -d' ' -f2"]),
    "active units": await lines([
      "sh",
      "-c",
      "systemctl list-units --state=active --plain --no-legend 'pulumi-hypervisor-*' | cut -d' ' -f1",
    ]),
  };
}

async function runningHosts(): Promise<BootedHost[]> {
  const hosts: BootedHost[] = [];
  for (const name of HOST_NAMES) {
    const record = await readHostRecord(name);
    const h = await attachHost(name);
    if (h !== undefined && record?.pid !== undefined && (await isAlive(record.pid))) hosts.push(h);
  }
  return hosts;
}

async function up(): Promise<void> {
  // A running host is reused; a stopped one starts again from its own disk.
  const hosts: BootedHost[] = [];
  let fresh = false;
  const running = await runningHosts();
  for (const name of HOST_NAMES) {
    const h = running.find((r) => r.name === name);
    if (h !== undefined) {
      out(`${name} is already up (${h.address}); applying examples/lab again`);
      hosts.push(h);
      continue;
    }
    if ((await readHostRecord(name)) === undefined) fresh = true;
    out(`starting ${name} (a booted Debian 12 host, systemd-nspawn, with a WAN)...`);
    const started = await startHost(name, {
      links: ["wan"],
      log: (l) => process.stderr.write(`${l}\n`),
    });
    out(`${name}: SSH answered ${started.sshAfterStartMs} ms after start`);
    hosts.push(started);
  }
  // state recorded against earlier hosts describes objects that no longer exist
  if (fresh) rmSync(DRIVER_STATE, { force: true });
  mkdirSync(DIR, { recursive: true });
  const entries = hosts.map((h, i) => ({ name: h.name, index: i + 1, connection: h.connection() }));
  writeFileSync(HOSTS_FILE, JSON.stringify(entries, null, 2), { mode: 0o600 });
  if (hasPulumiCli()) {
    out("applying examples/lab with the Pulumi CLI (pulumi up, local backend in .lab/state)");
    pulumi(["stack", "select", "--create", STACK]);
    // --refresh: hosts started anew have none of what an earlier stack recorded
    pulumi(["up", "--yes", "--refresh", "--stack", STACK]);
  } else {
    out(
      "the Pulumi CLI is not installed: applying examples/lab through the engine-protocol driver " +
        "(the dynamic-provider plugin from @pulumi/pulumi, called as the engine calls it)",
    );
    await applyWithDriver();
  }
  await show(hosts);
  out(
    `\nlab is up; hosts file: ${HOSTS_FILE}. Reboot one with: npm run lab -- reboot ${HOST_NAMES[0]}; ` +
      "remove everything with: npm run lab -- down",
  );
}

async function reboot(name: string | undefined): Promise<void> {
  const hosts = await runningHosts();
  const h = hosts.find((x) => x.name === name);
  if (h === undefined) {
    const names = hosts.map((x) => x.name).join(", ") || "none (start them with: npm run lab)";
    throw new Error(`reboot: no running lab host ${JSON.stringify(name ?? "")}; running: ${names}`);
  }
  const before = await summarize(h);
  out(`${h.name}: systemctl reboot...`);
  const sshMs = await h.reboot();
  out(`${h.name}: SSH answered ${sshMs} ms after systemctl reboot`);
  const settleStarted = Date.now();
  // is-system-running --wait returns once every unit of the boot has run (or failed).
  const settled = await h.ssh(["systemctl", "is-system-running", "--wait"], { timeoutMs: 120_000 });
  out(
    `${h.name}: boot finished (${settled.stdout.trim()}) ` +
      `${sshMs + Date.now() - settleStarted} ms after systemctl reboot`,
  );
  const after = await summarize(h);
  let missing = 0;
  out(`\n${h.name}: what came back by itself`);
  for (const [kind, items] of Object.entries(before)) {
    const back = after[kind] ?? [];
    const lost = items.filter((i) => !back.includes(i));
    missing += lost.length;
    const line = items.length === 0 ? "(none before)" : items.join(", ");
    out(`  ${kind.padEnd(13)} ${line}${lost.length > 0 ? `  MISSING: ${lost.join(", ")}` : ""}`);
  }
  await show([h]);
  out(
    missing === 0
      ? `\n${h.name}: everything came back after the reboot`
      : `\n${h.name}: ${missing} object(s) did not come back; see the units above (journalctl -u UNIT)`,
  );
  if (missing > 0) process.exitCode = 1;
}

async function down(): Promise<void> {
  const hosts = await runningHosts();
  if (hosts.length > 0 && existsSync(HOSTS_FILE)) {
    try {
      if (hasPulumiCli() && existsSync(path.join(DIR, "state"))) {
        pulumi(["destroy", "--yes", "--stack", STACK]);
      } else {
        out("destroying through the engine-protocol driver");
        await destroyWithDriver();
      }
    } catch (e) {
      // the hosts go away below with everything in it; say what could not be destroyed first
      out(`destroy failed, removing the lab anyway: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const name of HOST_NAMES) {
    const h = await attachHost(name);
    if (h === undefined) continue;
    await h.stop();
    out(`${name}: stopped, its disk removed`);
  }
  await stopLab(NAMESPACE_LAB);
  rmSync(DIR, { recursive: true, force: true });
  out("lab removed");
}

async function status(): Promise<void> {
  const hosts = await runningHosts();
  for (const name of HOST_NAMES) {
    const record = await readHostRecord(name);
    if (record === undefined) continue;
    const running = hosts.some((h) => h.name === name);
    out(`${name}: ${running ? "running" : "stopped (npm run lab starts it again from its disk)"}`);
  }
  if (hosts.length === 0) {
    out("no lab host is running (start them with: npm run lab)");
    return;
  }
  await show(hosts);
}

async function main(): Promise<void> {
  const cmd = process.argv[2] ?? "up";
  if (cmd === "up") await up();
  else if (cmd === "down") await down();
  else if (cmd === "status") await status();
  else if (cmd === "reboot") await reboot(process.argv[3]);
  else
    throw new Error(`unknown command ${JSON.stringify(cmd)}: use up, down, status or reboot HOST`);
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    process.stderr.write(`npm run lab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
