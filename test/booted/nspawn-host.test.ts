// Booted Debian 12 hosts (systemd-nspawn of the cached debootstrap root): SSH with a pinned host
// key, systemd as PID 1, ifupdown owning the uplink, and a reboot that keeps the disk and the host
// key while losing kernel state. Needs root and scripts/install-deps.sh.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost, stopOrphanedHosts } from "../../lab/booted/index";
import { listMountPoints } from "../../lab/booted/mounts";
import { exists, isAlive, runLocal } from "../../lab/booted/run";
import { sshArgv } from "../../lab/booted/ssh";
import { sshOk } from "../support/booted";

const hosts: BootedHost[] = [];
const names = [`bt${process.pid}a`, `bt${process.pid}b`];

function report(line: string): void {
  process.stderr.write(`booted nspawn: ${line}\n`);
}

function first(): BootedHost {
  const h = hosts[0];
  if (h === undefined) throw new Error("the hosts did not start");
  return h;
}

beforeAll(async () => {
  // Hosts of an earlier run that was killed before its afterAll would hold slots and disk.
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  const started = await Promise.allSettled(
    names.map((n, i) =>
      startHost(n, {
        log: (l) => process.stderr.write(l + "\n"),
        owner: process.pid,
        // The first host has a WAN and a second NIC too.
        ...(i === 0 ? { links: ["wan", "nic"] as const } : {}),
      }),
    ),
  );
  for (const s of started) if (s.status === "fulfilled") hosts.push(s.value);
  for (const s of started) if (s.status === "rejected") throw s.reason;
  for (const h of hosts) report(`${h.name}: SSH answered ${h.sshAfterStartMs} ms after start`);
}, 600_000);

afterAll(async () => {
  await Promise.allSettled(hosts.map((h) => h.stop()));
}, 60_000);

describe("a booted Debian 12 host from systemd-nspawn", () => {
  it("answers SSH as root only with its own pinned host key", async () => {
    const h = first();
    expect(await sshOk(h, ["hostname"])).toBe(`${h.name}\n`);
    // A known_hosts entry with another key for the same address must make ssh refuse.
    const other = hosts[1];
    if (other === undefined) throw new Error("no second host");
    const wrong = path.join(h.stateDir, "wrong_known_hosts");
    await fs.writeFile(wrong, `${h.address} ${other.hostKey}\n`);
    const r = await runLocal(sshArgv({ ...h, knownHostsPath: wrong }, ["true"]));
    expect(r.code).toBe(255);
    expect(r.stderr).toContain("Host key verification failed");
  });

  it("runs systemd as PID 1 with the system running and ifupdown owning the uplink", async () => {
    const h = first();
    expect((await sshOk(h, ["ps", "-o", "comm=", "-p", "1"])).trim()).toBe("systemd");
    const state = await h.ssh(["systemctl", "is-system-running"]);
    const failedUnits = await sshOk(h, ["systemctl", "--failed", "--no-legend", "--plain"]);
    report(
      `${h.name}: is-system-running: ${state.stdout.trim()}; failed units: ${failedUnits.trim() || "none"}`,
    );
    expect(["running", "degraded"]).toContain(state.stdout.trim());
    expect(await sshOk(h, ["ifquery", "--state", h.uplink])).toBe(`${h.uplink}=${h.uplink}\n`);
    const stanza = await sshOk(h, ["cat", `/etc/network/interfaces.d/${h.uplink}`]);
    expect(stanza).toContain(`address ${h.address}/24`);
    // exec enters the container's namespaces without SSH.
    const viaNsenter = await h.exec(["hostname"]);
    expect(viaNsenter).toEqual({ code: 0, stdout: `${h.name}\n`, stderr: "" });
  });

  it("keeps its disk and host key across a reboot and loses its kernel state", async () => {
    const h = first();
    await sshOk(h, ["sh", "-c", "echo kept > /root/reboot-proof"]);
    await sshOk(h, ["ip", "link", "add", "br-reboot", "type", "bridge"]);
    expect(await sshOk(h, ["ip", "-br", "link", "show", "br-reboot"])).toContain("br-reboot");
    const keyBefore = await sshOk(h, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]);

    const ms = await h.reboot();
    report(`${h.name}: reboot cycle (systemctl reboot to SSH answering) ${ms} ms`);

    expect(await sshOk(h, ["cat", "/root/reboot-proof"])).toBe("kept\n");
    const bridge = await h.ssh(["ip", "link", "show", "br-reboot"]);
    expect(bridge.code).not.toBe(0);
    expect(bridge.stderr).toContain("does not exist");
    // ssh above verified the pinned key; the file on disk is the same too.
    expect(await sshOk(h, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).toBe(keyBefore);
    expect(keyBefore).toContain(h.hostKey);
    const init = await sshOk(h, ["ps", "-o", "comm=", "-o", "etimes=", "-p", "1"]);
    const [comm, elapsed] = init.trim().split(/\s+/);
    expect(comm).toBe("systemd");
    expect(Number(elapsed)).toBeLessThanOrEqual(Math.ceil(ms / 1000) + 1);
    const state = (await h.ssh(["systemctl", "is-system-running", "--wait"])).stdout.trim();
    expect(["running", "degraded"]).toContain(state);
  });

  it("has a WAN with its default route and a second NIC, reachable from the machine after the reboot", async () => {
    const h = first();
    const wan = h.wan;
    const nic = h.nic;
    if (wan === undefined || nic === undefined) throw new Error("the first host has no side links");
    const routes = JSON.parse(await sshOk(h, ["ip", "-j", "route", "show", "default"])) as Array<{
      gateway?: string;
      dev?: string;
    }>;
    expect(routes.map((r) => [r.gateway, r.dev])).toEqual([[wan.outsideAddress, "wan0"]]);
    expect(await sshOk(h, ["ifquery", "--state", "wan0", "eth1"])).toBe("wan0=wan0\neth1=eth1\n");
    for (const l of [wan, nic]) {
      const ping = await runLocal(["busybox", "ping", "-c", "1", "-W", "2", l.address]);
      expect(ping.code).toBe(0);
    }
    // The host reaches the machine's end of its WAN (the upstream a NAT goes out to).
    expect((await h.ssh(["ping", "-c", "1", "-W", "2", wan.outsideAddress])).code).toBe(0);
    expect(hosts[1]?.wan).toBeUndefined();
  });

  it("keeps hosts independent: a file on one is not on the other", async () => {
    const [a, b] = hosts;
    if (a === undefined || b === undefined) throw new Error("no second host");
    await sshOk(a, ["touch", "/root/only-on-a"]);
    expect((await b.ssh(["test", "-e", "/root/only-on-a"])).code).toBe(1);
    expect(await sshOk(b, ["hostname"])).toBe(`${b.name}\n`);
    expect(a.hostKey).not.toBe(b.hostKey);
  });

  it("stop leaves no process, link, mount, state or slot behind", async () => {
    const b = hosts[1];
    if (b === undefined) throw new Error("no second host");
    const record = JSON.parse(await fs.readFile(path.join(b.stateDir, "host.json"), "utf8"));
    const supervisor = Number(record.pid);
    const slotFile = path.join(
      path.dirname(path.dirname(b.stateDir)),
      "slots",
      String(record.slot),
    );
    expect(await isAlive(supervisor)).toBe(true);
    await b.stop();
    hosts.splice(1, 1);
    expect(await isAlive(supervisor)).toBe(false);
    expect((await runLocal(["ip", "link", "show", b.outsideInterface])).code).not.toBe(0);
    expect((await runLocal(["ip", "link", "show", `${b.outsideInterface}w`])).code).not.toBe(0);
    expect((await listMountPoints()).filter((m) => m.startsWith(b.stateDir))).toEqual([]);
    expect(await exists(b.stateDir)).toBe(false);
    expect(await exists(slotFile)).toBe(false);
  });
});
