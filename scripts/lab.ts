// `npm run lab [up|down|status]`: the main job on the built-in lab.
// up: starts two lab hosts (network namespaces with their own sshd, on this machine), applies
// examples/lab to them (with `pulumi up` when the Pulumi CLI is installed, otherwise through the
// engine-protocol driver: the dynamic-provider plugin driven the way the engine drives it), then
// prints what exists on each host. down: destroys what was applied and removes the lab.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { attachLab, startLab, stopLab, type Lab } from "../lab";
import { DynamicProviderPlugin, Engine, type ResourceState } from "../lab/engine/engine";
import { runProgramWithMocks } from "../lab/engine/mocks";

const LAB = "lab";
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
  const specs = resources.map((r) => ({ type: r.type, name: r.name, inputs: r.inputs }));
  await withPlugin(async (engine) => {
    if (existsSync(DRIVER_STATE)) {
      for (const s of JSON.parse(readFileSync(DRIVER_STATE, "utf8")) as ResourceState[]) {
        engine.state.set(s.name, s);
      }
    }
    try {
      const { steps } = await engine.up(specs);
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
      const { steps } = await engine.destroy();
      for (const s of steps) out(`  ${s.op.padEnd(8)} ${s.name}`);
    } finally {
      saveState(engine);
    }
  });
  rmSync(DRIVER_STATE);
}

async function show(lab: Lab): Promise<void> {
  const probes: Array<[string, string[]]> = [
    ["bridges", ["ip", "-br", "link", "show", "type", "bridge"]],
    ["addresses", ["ip", "-br", "addr", "show"]],
    ["bridge ports", ["bridge", "link", "show"]],
    ["/etc/qemu/bridge.conf", ["sh", "-c", "cat /etc/qemu/bridge.conf 2>/dev/null || true"]],
    ["nftables", ["sh", "-c", "nft list ruleset 2>/dev/null || true"]],
    // lab hosts share this machine's pid namespace: keep the processes in this host's netns
    [
      "dnsmasq and qemu processes",
      [
        "sh",
        "-c",
        'me=$(readlink /proc/self/ns/net); for p in $(pgrep "^(dnsmasq|qemu-system-x86)"); do ' +
          '[ "$(readlink /proc/$p/ns/net)" = "$me" ] && printf "%s %s\\n" "$p" "$(tr "\\0" " " < /proc/$p/cmdline)"; done; true',
      ],
    ],
  ];
  for (const h of lab.hosts) {
    out(`\n== ${h.name} (${h.address}, netns ${h.netns}) ==`);
    for (const [title, argv] of probes) {
      const r = await h.exec(argv);
      const text = r.stdout.trim();
      out(`-- ${title}:${text ? `\n${text}` : " (none)"}`);
    }
  }
}

async function up(): Promise<void> {
  // A running lab is reused: starting it again would give its hosts new keys and empty /etc.
  let lab = await attachLab(LAB);
  if (lab) {
    out(`the lab is already up (${lab.hosts.length} hosts); applying examples/lab again`);
  } else {
    out(`starting the lab (2 hosts, with a WAN namespace)...`);
    // fixed indices 91-92, so the lab's addresses stay the same from one `up` to the next; tests
    // lease other indices from the allocator and run while the lab is up
    lab = await startLab({ name: LAB, hosts: 2, wan: true, firstIndex: 91 });
    // state recorded against an earlier lab describes hosts that no longer exist
    rmSync(DRIVER_STATE, { force: true });
  }
  mkdirSync(DIR, { recursive: true });
  const hosts = lab.hosts.map((h) => ({
    name: h.name,
    index: h.index,
    connection: h.connection(),
  }));
  writeFileSync(HOSTS_FILE, JSON.stringify(hosts, null, 2), { mode: 0o600 });
  if (hasPulumiCli()) {
    out("applying examples/lab with the Pulumi CLI (pulumi up, local backend in .lab/state)");
    pulumi(["stack", "select", "--create", STACK]);
    // --refresh: a lab started anew has none of what an earlier stack recorded
    pulumi(["up", "--yes", "--refresh", "--stack", STACK]);
  } else {
    out(
      "the Pulumi CLI is not installed: applying examples/lab through the engine-protocol driver " +
        "(the dynamic-provider plugin from @pulumi/pulumi, called as the engine calls it)",
    );
    await applyWithDriver();
  }
  await show(lab);
  out(`\nlab is up; hosts file: ${HOSTS_FILE}. Remove everything with: npm run lab -- down`);
}

async function down(): Promise<void> {
  const lab = await attachLab(LAB);
  if (lab && existsSync(HOSTS_FILE)) {
    try {
      if (hasPulumiCli() && existsSync(path.join(DIR, "state"))) {
        pulumi(["destroy", "--yes", "--stack", STACK]);
      } else {
        out("destroying through the engine-protocol driver");
        await destroyWithDriver();
      }
    } catch (e) {
      // the lab goes away below with everything in it; say what could not be destroyed first
      out(`destroy failed, removing the lab anyway: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  await stopLab(LAB);
  rmSync(DIR, { recursive: true, force: true });
  out("lab removed");
}

async function status(): Promise<void> {
  const lab = await attachLab(LAB);
  if (!lab) {
    out("no lab is running (start one with: npm run lab)");
    return;
  }
  await show(lab);
}

async function main(): Promise<void> {
  const cmd = process.argv[2] ?? "up";
  if (cmd === "up") await up();
  else if (cmd === "down") await down();
  else if (cmd === "status") await status();
  else throw new Error(`unknown command ${JSON.stringify(cmd)}: use up, down or status`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`npm run lab: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
