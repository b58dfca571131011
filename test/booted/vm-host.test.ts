// The same cached root as a QEMU TCG virtual machine: its own kernel and initramfs, SSH with a
// pinned host key, a reboot inside one QEMU process, SSH again. Needs root and
// scripts/install-deps.sh; never KVM.
import * as fs from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { isAlive } from "../../lab/booted/run";
import { startVm, stopOrphanedHosts } from "../../lab/booted/index";

let vm: BootedHost | undefined;

function report(line: string): void {
  process.stderr.write(`booted vm: ${line}\n`);
}

function theVm(): BootedHost {
  if (vm === undefined) throw new Error("the vm did not start");
  return vm;
}

async function sshOk(h: BootedHost, argv: string[]): Promise<string> {
  const r = await h.ssh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} on ${h.name} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function qemuPid(h: BootedHost): Promise<number> {
  const pid = Number((await fs.readFile(`${h.stateDir}/qemu.pid`, "utf8")).trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no qemu pid for ${h.name}`);
  return pid;
}

beforeAll(async () => {
  // Hosts of an earlier run that was killed before its afterAll would hold slots and disk.
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  vm = await startVm(`btvm${process.pid}`, {
    log: (l) => process.stderr.write(l + "\n"),
    owner: process.pid,
  });
  report(`${vm.name}: SSH answered ${vm.sshAfterStartMs} ms after start (disk image included)`);
}, 600_000);

afterAll(async () => {
  await vm?.stop();
}, 60_000);

describe("the booted root as a QEMU TCG virtual machine", () => {
  it("boots its own kernel with systemd as PID 1 and answers SSH with its pinned key", async () => {
    const h = theVm();
    expect(await sshOk(h, ["hostname"])).toBe(`${h.name}\n`);
    expect((await sshOk(h, ["ps", "-o", "comm=", "-p", "1"])).trim()).toBe("systemd");
    expect((await sshOk(h, ["systemd-detect-virt"])).trim()).toBe("qemu");
    expect(await sshOk(h, ["uname", "-r"])).toMatch(/-cloud-amd64\n$/);
    expect(await sshOk(h, ["ifquery", "--state", h.uplink])).toBe(`${h.uplink}=${h.uplink}\n`);
    const state = (await h.ssh(["systemctl", "is-system-running", "--wait"])).stdout.trim();
    const failedUnits = await sshOk(h, ["systemctl", "--failed", "--no-legend", "--plain"]);
    report(`${h.name}: is-system-running: ${state}; failed units: ${failedUnits.trim() || "none"}`);
    expect(["running", "degraded"]).toContain(state);
  }, 300_000);

  it("reboots inside the same QEMU process and keeps its disk", async () => {
    const h = theVm();
    const pid = await qemuPid(h);
    await sshOk(h, ["sh", "-c", "echo kept > /root/reboot-proof && sync"]);
    const ms = await h.reboot();
    report(`${h.name}: reboot cycle (systemctl reboot to SSH answering) ${ms} ms`);
    expect(await isAlive(pid)).toBe(true);
    expect(await sshOk(h, ["cat", "/root/reboot-proof"])).toBe("kept\n");
    const uptime = Number((await sshOk(h, ["cut", "-d.", "-f1", "/proc/uptime"])).trim());
    expect(uptime).toBeLessThanOrEqual(Math.ceil(ms / 1000) + 1);
  }, 300_000);
});
