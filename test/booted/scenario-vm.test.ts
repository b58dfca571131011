// The CI's real-kernel reboot: the booted root as a QEMU TCG virtual machine (its own kernel, udev
// and modules, never KVM), a bridge and a NAT created on it, the machine rebooted inside the same
// QEMU process, and both back by themselves from their systemd units. The only test that boots a
// VM (one TCG boot and reboot per run is what CI can afford). Needs root and the booted lab.
import * as fs from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startVm, stopOrphanedHosts } from "../../lab/booted/index";
import { isAlive } from "../../lab/booted/run";
import type { DynamicProviderPlugin, Engine, ResourceSpec } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";
import { failedProviderUnits, LEFTOVER_FILES, sshOk as sshOkOn } from "../support/booted";

const NET = "198.18.151";
const BRIDGE = "brvm";
const NAT = "vmnat";

let vm: BootedHost | undefined;
let plugin: DynamicProviderPlugin | undefined;
let engine: Engine;

function report(line: string): void {
  process.stderr.write(`scenario vm: ${line}\n`);
}

function theVm(): BootedHost {
  if (vm === undefined) throw new Error("the vm did not start");
  return vm;
}

const sshOk = (argv: string[]): Promise<string> => sshOkOn(theVm(), argv);

async function program(): Promise<ResourceSpec[]> {
  const connection = theVm().connection();
  return [
    await spec("Bridge", BRIDGE, { connection, name: BRIDGE, addresses: [`${NET}.1/24`] }),
    await spec(
      "NatRule",
      NAT,
      {
        connection,
        name: NAT,
        sourceCidr: `${NET}.0/24`,
        // A vm has no side links: NAT goes out of its uplink, as on a one-NIC server.
        outInterface: theVm().uplink,
        masquerade: true,
        forward: true,
      },
      [BRIDGE],
    ),
  ];
}

async function qemuPid(h: BootedHost): Promise<number> {
  const pid = Number((await fs.readFile(`${h.stateDir}/qemu.pid`, "utf8")).trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no qemu pid for ${h.name}`);
  return pid;
}

/** Returns the bridge's IPv4 addresses (CIDR), or undefined when it does not exist. */
async function bridgeAddresses(): Promise<string[] | undefined> {
  const r = await theVm().ssh(["ip", "-j", "-4", "addr", "show", "dev", BRIDGE]);
  if (r.code !== 0) return undefined;
  const links = JSON.parse(r.stdout) as Array<{
    addr_info: Array<{ local: string; prefixlen: number }>;
  }>;
  return links[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`) ?? [];
}

beforeAll(async () => {
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  vm = await startVm(`scv${process.pid}`, {
    owner: process.pid,
    log: (l) => process.stderr.write(l + "\n"),
  });
  report(`${vm.name}: SSH answered ${vm.sshAfterStartMs} ms after start (disk image included)`);
  ({ plugin, engine } = await startEngine());
}, 600_000);

afterAll(async () => {
  await plugin?.stop();
  await vm?.stop();
}, 120_000);

describe("a bridge and a NAT on a QEMU TCG virtual machine that reboots", () => {
  it("boots its own kernel with systemd as PID 1 and answers SSH with its pinned key", async () => {
    const h = theVm();
    expect(await sshOk(["hostname"])).toBe(`${h.name}\n`);
    expect((await sshOk(["ps", "-o", "comm=", "-p", "1"])).trim()).toBe("systemd");
    expect((await sshOk(["systemd-detect-virt"])).trim()).toBe("qemu");
    expect(await sshOk(["uname", "-r"])).toMatch(/-cloud-amd64\n$/);
    expect(await sshOk(["ifquery", "--state", h.uplink])).toBe(`${h.uplink}=${h.uplink}\n`);
    const state = (await h.ssh(["systemctl", "is-system-running", "--wait"])).stdout.trim();
    const failedUnits = await sshOk(["systemctl", "--failed", "--no-legend", "--plain"]);
    report(`${h.name}: is-system-running: ${state}; failed units: ${failedUnits.trim() || "none"}`);
    expect(["running", "degraded"]).toContain(state);
  }, 300_000);

  it("creates both, persisted by systemd", async () => {
    const { steps } = await engine.up(await program());
    expect(steps.map((s) => `${s.op} ${s.name}`)).toEqual([`create ${BRIDGE}`, `create ${NAT}`]);
    expect(await bridgeAddresses()).toEqual([`${NET}.1/24`]);
    expect(await sshOk(["nft", "list", "tables"])).toContain(`pulumi_hv_${NAT}`);
    for (const name of [BRIDGE, NAT]) {
      expect([name, engine.state.get(name)?.outputs["persistedBy"]]).toEqual([name, "systemd"]);
    }
  }, 300_000);

  it("reboots inside the same QEMU process, keeps its disk, and has both back with no drift", async () => {
    const pid = await qemuPid(theVm());
    await sshOk(["sh", "-c", "echo kept > /root/reboot-proof && sync"]);
    const ms = await theVm().reboot();
    report(`${theVm().name}: reboot cycle (systemctl reboot to SSH answering) ${ms} ms`);
    expect(await isAlive(pid)).toBe(true);
    expect(await sshOk(["cat", "/root/reboot-proof"])).toBe("kept\n");
    const uptime = Number((await sshOk(["cut", "-d.", "-f1", "/proc/uptime"])).trim());
    expect(uptime).toBeLessThanOrEqual(Math.ceil(ms / 1000) + 1);
    const state = (await theVm().ssh(["systemctl", "is-system-running", "--wait"])).stdout.trim();
    expect(["running", "degraded"]).toContain(state);

    expect(await bridgeAddresses()).toEqual([`${NET}.1/24`]);
    expect(await sshOk(["nft", "list", "tables"])).toContain(`pulumi_hv_${NAT}`);
    expect((await sshOk(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim()).toBe("1");
    expect(await failedProviderUnits(theVm())).toBe("");

    const { steps } = await engine.refresh();
    expect(
      steps.filter(
        (s) =>
          s.op === "refresh-gone" ||
          (s.op === "refresh-changed" &&
            (s.detail as { inputsChanged?: boolean } | undefined)?.inputsChanged === true),
      ),
    ).toEqual([]);
    for (const name of [BRIDGE, NAT]) {
      const outputs = engine.state.get(name)?.outputs ?? {};
      expect([name, outputs["persistedBy"], outputs["persistedDrift"]]).toEqual([
        name,
        "systemd",
        undefined,
      ]);
    }
    expect((await engine.up(await program())).steps.map((s) => s.op)).toEqual(["same", "same"]);
  }, 400_000);

  it("deletes both, units and files included", async () => {
    const { steps } = await engine.destroy();
    expect(steps.map((s) => `${s.op} ${s.name}`)).toEqual([`delete ${NAT}`, `delete ${BRIDGE}`]);
    expect(await bridgeAddresses()).toBeUndefined();
    expect(await sshOk(["nft", "list", "tables"])).not.toContain("pulumi_hv_");
    const files = await sshOk(["sh", "-c", LEFTOVER_FILES]);
    expect(files).toBe("");
  }, 300_000);
});
