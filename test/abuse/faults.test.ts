// Faults on a lab host while the provider works: sshd killed and the link dropped mid-apply, two
// plugin processes applying to one host at once, a full and a read-only /etc/pulumi-hypervisor.
// Each must end in a clear error, leave nothing half-written (no temp file, no half-created object
// that the state does not know), and a rerun must converge.
import * as net from "node:net";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import type { DynamicProviderPlugin, Engine } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";

let lab: Lab;
let h: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

beforeAll(async () => {
  lab = await startLab({ name: "abfault", hosts: 1 });
  h = lab.hosts[0]!;
  ({ plugin, engine } = await startEngine());
});

afterAll(async () => {
  await plugin?.stop();
  await lab?.stop();
});

const CLAIMS = "/run/pulumi-hypervisor/sysctl";

async function sh(script: string, ...args: string[]): Promise<string> {
  const r = await h.exec(["sh", "-c", script, "sh", ...args]);
  if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// Holds the sysctl claims' lock, so a NatRule's apply stops inside its claim step (`flock -w 30 9`):
// the apply is then reliably in flight when the fault is injected.
async function holdClaimsLock(): Promise<void> {
  await sh(
    'mkdir -p "$1"; (exec 9>"$1/.lock"; flock -x 9; exec sleep 300) >/dev/null 2>&1 </dev/null & echo $! > /run/hvab-lock.pid',
    CLAIMS,
  );
}

async function applyBlocked(): Promise<void> {
  await until("the apply to wait on the claims lock", async () => {
    const ps = await sh("ps -eo args= | grep -c '^flock -w [0-9]* 9$' || true");
    return Number(ps.trim()) > 0;
  });
}

async function releaseClaimsLock(): Promise<void> {
  await sh('kill "$(cat /run/hvab-lock.pid)"; rm -f /run/hvab-lock.pid');
}

function sshdAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: h.address, port: 22 });
    s.setTimeout(1000);
    s.once("data", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

const natSpec = (name: string, n: number) =>
  spec("NatRule", name, {
    connection: h.connection(),
    name,
    sourceCidr: `${h.guestNet(n)}.0/24`,
    outInterface: "eth0",
    masquerade: true,
  });

const tableOnHost = async (name: string): Promise<boolean> =>
  (await h.exec(["nft", "list", "table", "ip", `pulumi_hv_${name}`])).code === 0;

async function tempFiles(): Promise<string[]> {
  const r = await h.exec([
    "find",
    "/etc/pulumi-hypervisor",
    "/run/pulumi-hypervisor",
    "/var/lib/pulumi-hypervisor",
    "-name",
    "*.pulumi-tmp.*",
  ]);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Runs an up that must fail; returns its error text and how long it took. */
async function failingUp(run: Promise<unknown>): Promise<{ message: string }> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return { message: (err as Error).message };
}

describe("faults mid-apply", () => {
  it("sshd killed mid-apply: a clear error at once, nothing leaked, a rerun converges", async () => {
    const res = [await natSpec("hvabk", 1)];
    await holdClaimsLock();
    const t0 = Date.now();
    const up = failingUp(engine.up(res));
    await applyBlocked();
    // Every sshd process of this lab host (its network namespace): the listener and each session's
    // (the commands they ran are left alone). Other labs' sshd on the machine are not touched.
    await sh(
      'own=$(readlink /proc/self/ns/net); for p in $(ps -eo pid=,comm= | awk \'$2 ~ /^sshd/ {print $1}\'); do [ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$own" ] && kill -9 $p; done; true',
    );
    const failed = await up;
    const ms = Date.now() - t0;
    await releaseClaimsLock();
    await h.exec([
      "/usr/sbin/sshd",
      "-f",
      path.join(lab.stateDir, h.name, "sshd_config"),
      "-E",
      h.sshdLogPath,
    ]);
    await until("sshd to answer again", sshdAnswers);
    // The orphaned apply finishes once the lock is free; either the state knows the object or
    // the host has nothing of it.
    await sleep(500);
    const recorded = engine.state.has("hvabk");
    const onHost = await tableOnHost("hvabk");
    const rerun = Date.now();
    await engine.up(res);
    const rerunMs = Date.now() - rerun;
    const converged = await tableOnHost("hvabk");
    await engine.destroy();
    process.stderr.write(
      `faults: sshd killed mid-apply: error after ${ms} ms (${failed.message.slice(0, 160)}); ` +
        `state recorded ${recorded}, on host ${onHost}; rerun converged in ${rerunMs} ms\n`,
    );
    expect(failed.message).toMatch(/connection lost|ended without an exit status/);
    expect(ms).toBeLessThan(15_000);
    expect(converged).toBe(true);
    expect(await tableOnHost("hvabk")).toBe(false);
    expect(recorded || !onHost).toBe(true);
  });
  it("link dropped mid-apply: an error once keepalives go unanswered, recorded, a rerun converges", async () => {
    const res = [await natSpec("hvabl", 2)];
    await holdClaimsLock();
    const t0 = Date.now();
    const up = failingUp(engine.up(res));
    await applyBlocked();
    await sh("ip link set mgmt0 down");
    const failed = await up;
    const ms = Date.now() - t0;
    await sh("ip link set mgmt0 up");
    await releaseClaimsLock();
    await until("sshd to answer again", sshdAnswers);
    const recorded = engine.state.has("hvabl");
    const onHost = await tableOnHost("hvabl");
    const rerun = Date.now();
    await engine.up(res);
    const rerunMs = Date.now() - rerun;
    const converged = await tableOnHost("hvabl");
    await engine.destroy();
    process.stderr.write(
      `faults: link dropped mid-apply: error after ${ms} ms (${failed.message.slice(0, 160)}); ` +
        `state recorded ${recorded}, on host ${onHost}; rerun converged in ${rerunMs} ms\n`,
    );
    expect(failed.message).toMatch(/connection lost/);
    // Three unanswered 10 s keepalives (dial.ts); shorter would cut sessions a bridge's STP
    // pauses for about 30 s.
    expect(ms).toBeLessThan(50_000);
    expect(converged).toBe(true);
    expect(await tableOnHost("hvabl")).toBe(false);
    expect(recorded || !onHost).toBe(true);
  });
});

describe("two plugin processes on one host at once", () => {
  it("both apply and destroy side by side; the shared ip_forward claim ends as it began", async () => {
    const forward = (): Promise<string> => sh("cat /proc/sys/net/ipv4/ip_forward");
    const original = (await forward()).trim();
    const a = await startEngine();
    const b = await startEngine();
    try {
      const stack = (p: string, n: number) =>
        Promise.all([
          ...Array.from({ length: 3 }, (_, i) => natSpec(`hvab${p}${i}`, n + i)),
          ...Array.from({ length: 4 }, (_, i) =>
            spec("TapDevice", `t${i}`, { connection: h.connection(), name: `hvab-${p}t${i}` }),
          ),
        ]);
      const t0 = Date.now();
      await Promise.all([a.engine.up(await stack("a", 10)), b.engine.up(await stack("b", 20))]);
      const upMs = Date.now() - t0;
      const during = (await forward()).trim();
      await Promise.all([a.engine.destroy(), b.engine.destroy()]);
      const claims = await sh(`find ${CLAIMS} -type f ! -name .lock`);
      const tables = await sh("nft list tables");
      const taps = await sh("ls /sys/class/net");
      process.stderr.write(
        `faults: two plugins, 14 resources at once: up in ${upMs} ms; ip_forward ${original} -> ` +
          `${during} -> ${(await forward()).trim()}\n`,
      );
      expect(during).toBe("1");
      expect((await forward()).trim()).toBe(original);
      expect(claims).toBe("");
      expect(tables).not.toContain("pulumi_hv_hvab");
      expect(taps).not.toContain("hvab-");
    } finally {
      await a.plugin.stop();
      await b.plugin.stop();
    }
  });
});

describe("a full and a read-only /etc/pulumi-hypervisor", () => {
  const ETC = "/etc/pulumi-hypervisor";
  const dnsNet = () => h.guestNet(30);
  const bridge = () =>
    spec("Bridge", "br", {
      connection: h.connection(),
      name: "hvab-fbr",
      addresses: [`${dnsNet()}.1/24`],
    });
  const dnsmasq = () =>
    spec(
      "DnsmasqInstance",
      "dns",
      {
        connection: h.connection(),
        name: "hvab-fd",
        interface: "hvab-fbr",
        subnet: `${dnsNet()}.0/24`,
        dhcpRange: { start: `${dnsNet()}.100`, end: `${dnsNet()}.150` },
        staticLeases: [{ mac: "52:54:00:ab:0f:01", ip: `${dnsNet()}.10`, hostname: "guest" }],
      },
      ["br"],
    );
  const running = async (): Promise<number> =>
    Number((await sh("ps -eo args= | grep -c '^[d]nsmasq.*hvab-fd' || true")).trim());
  const files = async (): Promise<string> => sh(`find ${ETC}/dnsmasq -type f 2>/dev/null || true`);

  beforeAll(async () => {
    await engine.up([await bridge()]);
    await sh(`mkdir -p ${ETC} && mount -t tmpfs -o size=16k,mode=0755 hvab-etc ${ETC}`);
  });

  afterAll(async () => {
    await h.exec(["umount", ETC]);
  });

  it("full: a clear error, no temp file, no daemon, nothing half-written; a rerun converges", async () => {
    await h.exec(["sh", "-c", `dd if=/dev/zero of=${ETC}/fill bs=1k 2>/dev/null`]);
    const failed = await failingUp(engine.up([await bridge(), await dnsmasq()]));
    // A guest's config file travels as a plain file write (host.ts's temp-and-rename).
    const guest = await spec("QemuGuest", "g", {
      connection: h.connection(),
      name: "hvab-fg",
      running: false,
    });
    const guestFailed = await failingUp(engine.up([await bridge(), guest]));
    const temps = await tempFiles();
    const left = await files();
    const daemons = await running();
    await sh(`rm -f ${ETC}/fill`);
    await engine.up([await bridge(), await dnsmasq(), guest]);
    const after = await running();
    await engine.up([await bridge()]);
    process.stderr.write(
      `faults: full ${ETC}: dnsmasq: …${failed.message.slice(-40)}; guest: …` +
        `${guestFailed.message.slice(-60)}; temp files ${temps.length}, ` +
        `daemons ${daemons}; rerun: ${after} daemon\n`,
    );
    expect(failed.message).toContain("sh dnsmasq-start.sh");
    // dnsmasq-start.sh names what it could not write and why (dd's error, not its record counts).
    expect(failed.message).toMatch(
      /writing the dnsmasq (config|hosts file) failed: .*No space left on device$/,
    );
    expect(guestFailed.message).toContain("No space left on device");
    expect(temps).toEqual([]);
    expect(daemons).toBe(0);
    expect(
      left.split("\n").filter((l) => l !== "" && !/\/(dnsmasq\.conf|dhcp-hosts)$/.test(l)),
    ).toEqual([]);
    expect(after).toBe(1);
  });

  it("read-only: a clear error, no temp file, no daemon; a rerun converges", async () => {
    await sh(`mount -o remount,ro ${ETC}`);
    const failed = await failingUp(engine.up([await bridge(), await dnsmasq()]));
    const temps = await tempFiles();
    const daemons = await running();
    await sh(`mount -o remount,rw ${ETC}`);
    await engine.up([await bridge(), await dnsmasq()]);
    const after = await running();
    await engine.destroy();
    process.stderr.write(
      `faults: read-only ${ETC}: …${failed.message.slice(-80)}; temp files ${temps.length}, ` +
        `daemons ${daemons}; rerun: ${after} daemon\n`,
    );
    expect(failed.message).toContain("Read-only file system");
    expect(temps).toEqual([]);
    expect(daemons).toBe(0);
    expect(after).toBe(1);
  });
});
