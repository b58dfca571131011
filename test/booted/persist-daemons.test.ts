// DnsmasqInstance and QemuGuest on a booted Debian 12 host (systemd as PID 1, real reboots): each
// runs under its own service unit, comes back within seconds after SIGKILL and after a reboot,
// a guest that powers itself off stays off, reads at once answer as reads one by one with one
// systemctl per way of asking, and delete followed by a reboot leaves nothing behind.
// Guests run under TCG. Measured times go to stderr.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NOT_OURS } from "../../provider/src/persist/persistence";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost, stopOrphanedHosts } from "../../lab/booted/index";
import type { DynamicProviderPlugin, Engine, ResourceSpec } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";
import { needDaemonReload, readsBothWays, systemdReloads } from "../support/booted";
import { buildGuestImage, guestKernelArgs, parseGuestLog } from "../support/guest-image";

const NET = "198.18.77";
const BRIDGE = "pdbr0";
const BRIDGE2 = "pdbr1";
const TAP = "pdtap0";
const MAC = "52:54:00:77:00:10";
const GUEST_IP = `${NET}.10`;
const DM_UNIT = "pulumi-hypervisor-dnsmasq-pdlan.service";
const QEMU_UNIT = "pulumi-hypervisor-qemu-pdg1.service";
// Stands in for the TapDevice's own unit (same name, so the guest's unit is ordered after it): the
// bridge and the tap, created at every boot.
const NET_UNIT = `pulumi-hypervisor-tap-${TAP}.service`;
const KERNEL = "/var/lib/pd-test/vmlinuz";
const INITRD = "/var/lib/pd-test/initrd.gz";

let h: BootedHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

function report(line: string): void {
  process.stderr.write(`persist-daemons: ${line}\n`);
}

async function sh(script: string, ...args: string[]): Promise<string> {
  const r = await h.exec(["sh", "-c", script, "sh", ...args]);
  if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const unitProp = async (unit: string, prop: string): Promise<string> =>
  (await sh('systemctl show -p "$1" --value -- "$2"', prop, unit)).trim();
const mainPid = async (unit: string): Promise<number> => Number(await unitProp(unit, "MainPID"));
const isActive = async (unit: string): Promise<string> =>
  (await sh('systemctl is-active -- "$1" || true', unit)).trim();
const isEnabled = async (unit: string): Promise<string> =>
  (await sh('systemctl is-enabled -- "$1" 2>/dev/null || true', unit)).trim();
const pingGuest = async (): Promise<boolean> =>
  (await h.exec(["ping", "-c", "1", "-W", "1", GUEST_IP])).code === 0;

/** Polls fn until it returns a value (not undefined); returns it and the milliseconds it took. */
async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return { value, ms: Math.round(performance.now() - t0) };
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function dmInputs(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    connection: h.connection(),
    name: "pdlan",
    interface: BRIDGE,
    subnet: `${NET}.0/24`,
    dhcpRange: { start: `${NET}.100`, end: `${NET}.150`, leaseTime: "1h" },
    staticLeases: [{ mac: MAC, ip: GUEST_IP, hostname: "pdg1" }],
    router: `${NET}.1`,
    ...over,
  };
}

function guestInputs(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    connection: h.connection(),
    name: "pdg1",
    memoryMiB: 192,
    accel: "tcg",
    kernel: KERNEL,
    initrd: INITRD,
    // DHCP: the guest's address comes from the dnsmasq the test also persists.
    kernelArgs: guestKernelArgs({ hostname: "pdg1" }),
    nics: [{ mac: MAC, tap: TAP }],
    shutdownTimeoutSeconds: 10,
    ...over,
  };
}

async function program(
  dm: Record<string, unknown> = {},
  g: Record<string, unknown> = {},
): Promise<ResourceSpec[]> {
  return [
    await spec("DnsmasqInstance", "dm", dmInputs(dm)),
    await spec("QemuGuest", "g1", guestInputs(g), ["dm"]),
  ];
}

beforeAll(async () => {
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  const image = await buildGuestImage();
  h = await startHost(`pd${process.pid}`, { owner: process.pid });
  report(`SSH answered ${h.sshAfterStartMs} ms after start`);
  // The guest's kernel and initramfs, copied in (base64: exec's stdin is text).
  const { readFile } = await import("node:fs/promises");
  for (const [from, to] of [
    [image.kernel, KERNEL],
    [image.initrd, INITRD],
  ] as const) {
    const r = await h.exec(
      ["sh", "-c", 'mkdir -p "$(dirname "$1")" && base64 -d > "$1"', "sh", to],
      { stdin: (await readFile(from)).toString("base64"), timeoutMs: 120_000 },
    );
    if (r.code !== 0) throw new Error(`copying ${from} to the host: ${r.stderr}`);
  }
  await sh(
    [
      "set -e",
      'cat > "/etc/systemd/system/$1" <<EOF',
      "[Unit]",
      "Description=test network: bridges $2 and $3, tap $4",
      "[Service]",
      "Type=oneshot",
      "RemainAfterExit=yes",
      "ExecStart=ip link add $2 type bridge",
      `ExecStart=ip addr add ${NET}.1/24 dev $2`,
      "ExecStart=ip link set $2 up",
      "ExecStart=ip link add $3 type bridge",
      "ExecStart=ip addr add 198.18.78.1/24 dev $3",
      "ExecStart=ip link set $3 up",
      "ExecStart=ip tuntap add dev $4 mode tap",
      "ExecStart=ip link set $4 master $2 up",
      "[Install]",
      "WantedBy=multi-user.target",
      "EOF",
      'systemctl daemon-reload && systemctl enable --now --quiet -- "$1"',
    ].join("\n"),
    NET_UNIT,
    BRIDGE,
    BRIDGE2,
    TAP,
  );
  ({ plugin, engine } = await startEngine());
}, 600_000);

afterAll(async () => {
  await plugin?.stop();
  await h?.stop();
}, 120_000);

const out = (name: string): Record<string, unknown> => engine.state.get(name)?.outputs ?? {};

describe("dnsmasq and QEMU supervised by systemd on a booted host", () => {
  it("runs each under its own enabled unit, started by systemd", async () => {
    const reloads = await systemdReloads(h);
    await engine.up(await program());
    // one reload of systemd's units each (its enable's, before its start)
    expect((await systemdReloads(h)) - reloads).toBe(2);
    expect(await needDaemonReload(h, [DM_UNIT, QEMU_UNIT])).toEqual(["no", "no"]);
    expect(out("dm")).toMatchObject({ persistedBy: "systemd" });
    expect(out("dm").persistedDrift).toBeUndefined();
    expect(out("g1")).toMatchObject({ persistedBy: "systemd", status: "running" });
    expect([await isEnabled(DM_UNIT), await isActive(DM_UNIT)]).toEqual(["enabled", "active"]);
    expect([await isEnabled(QEMU_UNIT), await isActive(QEMU_UNIT)]).toEqual(["enabled", "active"]);
    expect(await mainPid(DM_UNIT)).toBe(out("dm").pid);
    expect(await mainPid(QEMU_UNIT)).toBe(out("g1").pid);
    const { ms } = await until("the guest answers ping", async () =>
      (await pingGuest()) ? true : undefined,
    );
    report(`guest answered ping ${ms} ms after up returned`);
  }, 300_000);

  it("reads the same in one batch as one by one, asking systemd twice for the batch", async () => {
    const states = [...engine.state.values()];
    // each unit its own answer: dnsmasq's disabled meanwhile, and each its own pid
    const reads = await readsBothWays(h, plugin, states, DM_UNIT);
    expect(reads.batched).toEqual(reads.alone);
    expect(
      reads.batched.map((r) => [r.properties["persistedDrift"] !== undefined, r.properties["pid"]]),
    ).toEqual([
      [true, await mainPid(DM_UNIT)],
      [false, await mainPid(QEMU_UNIT)],
    ]);
    // alone: each probe's show and is-enabled; at once: one show and one list-unit-files
    expect(reads.systemctl).toEqual({ alone: 2 * states.length, batched: 2 });
  });

  it("applies a new static lease with SIGHUP to the same dnsmasq", async () => {
    const pid = out("dm").pid;
    const extra = { mac: "52:54:00:77:00:11", ip: `${NET}.11` };
    await engine.up(
      await program({ staticLeases: [{ mac: MAC, ip: GUEST_IP, hostname: "pdg1" }, extra] }),
    );
    expect(out("dm").pid).toBe(pid);
    expect(await mainPid(DM_UNIT)).toBe(pid);
    expect(await sh("cat /etc/pulumi-hypervisor/dnsmasq/pdlan/dhcp-hosts")).toContain(
      "52:54:00:77:00:11",
    );
    await engine.up(await program());
  }, 120_000);

  it("brings dnsmasq back within seconds after SIGKILL, without Pulumi", async () => {
    const before = await mainPid(DM_UNIT);
    await sh('kill -KILL "$1"', String(before));
    const { value, ms } = await until("dnsmasq restarted by systemd", async () => {
      const pid = await mainPid(DM_UNIT);
      return pid !== 0 && pid !== before && (await isActive(DM_UNIT)) === "active"
        ? pid
        : undefined;
    });
    report(`dnsmasq back ${ms} ms after SIGKILL (pid ${before} -> ${value})`);
    expect(ms).toBeLessThan(10_000);
    await engine.refresh();
    expect(out("dm").pid).toBe(value);
  }, 60_000);

  it("brings QEMU back within seconds after SIGKILL, without Pulumi", async () => {
    const before = await mainPid(QEMU_UNIT);
    await sh('kill -KILL "$1"', String(before));
    const { value, ms } = await until("QEMU restarted by systemd", async () => {
      const pid = await mainPid(QEMU_UNIT);
      return pid !== 0 && pid !== before && (await isActive(QEMU_UNIT)) === "active"
        ? pid
        : undefined;
    });
    report(`QEMU back ${ms} ms after SIGKILL (pid ${before} -> ${value})`);
    expect(ms).toBeLessThan(10_000);
    const ping = await until("the restarted guest answers ping", async () =>
      (await pingGuest()) ? true : undefined,
    );
    report(`restarted guest answered ping ${ping.ms} ms after its QEMU was back`);
  }, 120_000);

  it("brings both back after a reboot, with no drift on refresh", async () => {
    const ms = await h.reboot();
    report(`host reboot: SSH back after ${ms} ms`);
    const t0 = performance.now();
    const ping = await until(
      "the guest answers ping after the reboot",
      async () => ((await pingGuest()) ? true : undefined),
      120_000,
    );
    report(
      `guest answered ping ${Math.round(performance.now() - t0)} ms after SSH was back (${ms + ping.ms} ms after the reboot began)`,
    );
    expect(await isActive(DM_UNIT)).toBe("active");
    expect(await isActive(QEMU_UNIT)).toBe("active");
    // The guest's address came from the static lease of the dnsmasq started at boot.
    const log = parseGuestLog(await sh("cat /var/log/pulumi-hypervisor/qemu/pdg1.log"));
    expect(log.networkReady).toBe(`${GUEST_IP}/24`);
    // New pids are new outputs; no input drifted and nothing is gone.
    const refreshed = await engine.refresh();
    const drifted = refreshed.steps.filter(
      (s) =>
        s.op === "refresh-gone" ||
        (s.detail as { inputsChanged?: boolean } | undefined)?.inputsChanged === true,
    );
    expect(drifted).toEqual([]);
    expect(out("dm").persistedDrift).toBeUndefined();
    expect(out("g1").persistedDrift).toBeUndefined();
    expect(out("g1").status).toBe("running");
  }, 300_000);

  it("reports a unit file edited by hand as drift, and up repairs it", async () => {
    await sh(`sed -i 's/^RestartSec=1$/RestartSec=30/' /etc/systemd/system/${DM_UNIT}`);
    const refreshed = await engine.refresh();
    expect(out("dm").persistedDrift).toBe(`/etc/systemd/system/${DM_UNIT} ${NOT_OURS}`);
    expect(
      refreshed.steps
        .filter(
          (s) => (s.detail as { inputsChanged?: boolean } | undefined)?.inputsChanged === true,
        )
        .map((s) => s.name),
    ).toEqual(["dm"]);
    // The same program: the drift refresh recorded is what up repairs.
    const pid = out("dm").pid;
    const reloads = await systemdReloads(h);
    await engine.up(await program());
    // the unit stays enabled, so a reload of its own makes systemd read the file again
    expect((await systemdReloads(h)) - reloads).toBe(1);
    expect(await needDaemonReload(h, [DM_UNIT])).toEqual(["no"]);
    expect(out("dm").persistedDrift).toBeUndefined();
    expect(out("dm").pid).toBe(pid);
    expect(await sh(`cat /etc/systemd/system/${DM_UNIT}`)).toContain("RestartSec=1\n");
  }, 120_000);

  it("leaves a guest that powers itself off stopped", async () => {
    const pid = await mainPid(QEMU_UNIT);
    // The ACPI power button from QMP directly, not through systemd: the guest powers off (exit 0).
    await sh(
      `printf '%s\\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}' | socat -t 2 - UNIX-CONNECT:/run/pulumi-hypervisor/qemu/pdg1/qmp.sock`,
    );
    await until("the guest powered off", async () =>
      (await sh('[ -d "/proc/$1" ] && echo y || echo n', String(pid))).trim() === "n"
        ? true
        : undefined,
    );
    await new Promise((r) => setTimeout(r, 4000));
    expect(await isActive(QEMU_UNIT)).toBe("inactive");
    expect(await mainPid(QEMU_UNIT)).toBe(0);
    await engine.refresh();
    expect(out("g1").status).toBe("stopped");
  }, 120_000);

  it("with persistence none, writes no unit", async () => {
    const specs = [
      ...(await program()),
      await spec(
        "DnsmasqInstance",
        "dm2",
        dmInputs({
          name: "pdnone",
          interface: BRIDGE2,
          subnet: "198.18.78.0/24",
          dhcpRange: { start: "198.18.78.100", end: "198.18.78.150" },
          staticLeases: [],
          router: "198.18.78.1",
          persistence: "none",
        }),
      ),
    ];
    await engine.up(specs);
    expect(out("dm2")).toMatchObject({ persistedBy: "none" });
    expect(await sh("ls /etc/systemd/system/ | grep -c pdnone || true")).toBe("0\n");
    expect(await isEnabled("pulumi-hypervisor-dnsmasq-pdnone.service")).toBe("");
    // the guest started again (it was off): by its unit
    expect(await mainPid(QEMU_UNIT)).toBe(out("g1").pid);
    // Runtime only: deleted now, before a reboot would make it read as gone.
    await engine.up(await program());
    expect(await sh("ls /etc/pulumi-hypervisor/dnsmasq")).toBe("pdlan\n");
  }, 300_000);

  it("fails the guest's unit with a clear message when its tap is missing at boot", async () => {
    // Gone, not just disabled: the guest's unit Wants= it, which would start it anyway.
    await sh(
      'systemctl disable --quiet -- "$1" && mv "/etc/systemd/system/$1" /root/ && systemctl daemon-reload',
      NET_UNIT,
    );
    await h.reboot();
    const { ms } = await until("the guest's unit failed", async () =>
      (await isActive(QEMU_UNIT)) === "failed" ? true : undefined,
    );
    report(`guest unit failed ${ms} ms after SSH was back (tap missing)`);
    expect(await sh('journalctl -b -u "$1" --no-pager -o cat', QEMU_UNIT)).toContain(
      `guest pdg1: tap ${TAP} does not exist; not starting the guest on a fresh unbridged tap`,
    );
    // QEMU never ran, so it created no tap of that name either.
    expect((await h.exec(["ip", "link", "show", "dev", TAP])).code).not.toBe(0);
    await sh(
      'mv "/root/$1" /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now --quiet -- "$1" && systemctl reset-failed -- "$2"',
      NET_UNIT,
      QEMU_UNIT,
    );
    // Refresh sees the guest stopped (running: false drifted), so up starts it through its unit.
    await engine.refresh();
    await engine.up(await program());
    expect(await isActive(QEMU_UNIT)).toBe("active");
    expect(await mainPid(QEMU_UNIT)).toBe(out("g1").pid);
  }, 300_000);

  it("deletes: after a reboot no process, unit or file of either comes back", async () => {
    await engine.destroy();
    await h.reboot();
    expect(await isActive(DM_UNIT)).not.toBe("active");
    const left = await sh(
      [
        "ls /etc/systemd/system | grep pulumi-hypervisor-qemu || true",
        "ls /etc/systemd/system | grep pulumi-hypervisor-dnsmasq || true",
        "find /etc/systemd/system -name 'pulumi-hypervisor-*' -path '*.wants/*' | grep -v -- '-tap-' || true",
        "find /etc/pulumi-hypervisor/qemu /etc/pulumi-hypervisor/dnsmasq /run/pulumi-hypervisor/qemu /run/pulumi-hypervisor/dnsmasq /var/lib/pulumi-hypervisor/dnsmasq -mindepth 1 2>/dev/null || true",
        "pgrep -a 'dnsmasq|qemu-system' || true",
      ].join("\n"),
    );
    expect(left).toBe("");
  }, 300_000);
});
