// The management NIC on a booted Debian host whose uplink eth0 is a static ifupdown stanza: a
// bridge takes eth0 over with its address through ifupdown, under the dead-man timer, survives a
// reboot and gives eth0 its own stanza back on delete; and a bridge whose new path does not answer
// (a firewall dropping SSH on it) is rolled back by the host itself. Needs root.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost, stopOrphanedHosts } from "../../lab/booted/index";
import { Lifecycle } from "../../provider/src/lifecycle";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { bridgeModule } from "../../provider/src/resources/bridge/index";

let h: BootedHost;
const lc = new Lifecycle(bridgeModule, hostFor);
const STANZA = "/etc/network/interfaces.d/eth0";
const BRIDGE_STANZA = "/etc/network/interfaces.d/pulumi-hypervisor-br0";

function report(line: string): void {
  process.stderr.write(`mgmt: ${line}\n`);
}

async function on(argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function addrs(dev: string): Promise<string[]> {
  const r = await h.exec(["ip", "-j", "addr", "show", "dev", dev]);
  if (r.code !== 0) return [];
  const links = JSON.parse(r.stdout) as Array<{
    master?: string;
    addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
  }>;
  return (links[0]?.addr_info ?? [])
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`);
}

async function mac(dev: string): Promise<string | undefined> {
  const r = await h.exec(["ip", "-j", "link", "show", "dev", dev]);
  return (JSON.parse(r.stdout) as Array<{ address?: string }>)[0]?.address;
}

async function master(dev: string): Promise<string | undefined> {
  const r = await h.exec(["ip", "-j", "link", "show", "dev", dev]);
  return (JSON.parse(r.stdout) as Array<{ master?: string }>)[0]?.master;
}

beforeAll(async () => {
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  h = await startHost(`mg${process.pid}`, { owner: process.pid });
}, 600_000);

afterAll(async () => {
  await closeAllHosts();
  await h?.stop();
}, 120_000);

describe("a bridge taking over the ifupdown-managed uplink", () => {
  let original = "";
  let eth0Mac: string | undefined;
  const props = (): Record<string, unknown> => ({
    connection: h.connection(),
    name: "br0",
    ports: ["eth0"],
    addresses: [`${h.address}/24`],
    rollbackSeconds: 30,
  });

  it("moves eth0 and its address under br0 through ifupdown, confirmed over a new login", async () => {
    original = await on(["cat", STANZA]);
    eth0Mac = await mac("eth0");
    const t0 = Date.now();
    const { id } = await lc.create(props());
    report(`create with the takeover took ${Date.now() - t0} ms`);
    expect(id).toBe("br0");
    // the address keeps its MAC: br0 takes eth0's, as it will at every boot
    expect(await mac("br0")).toBe(eth0Mac);
    expect(await addrs("br0")).toEqual([`${h.address}/24`]);
    expect(await master("eth0")).toBe("br0");
    expect(await on(["cat", STANZA])).toBe(
      original.replace(/iface eth0 inet static\n.*\n/, "iface eth0 inet manual\n"),
    );
    expect(await on(["cat", BRIDGE_STANZA])).toContain(
      `iface br0 inet static\n    address ${h.address}/24\n`,
    );
    expect(await on(["cat", "/etc/pulumi-hypervisor/bridge-nic/br0/original"])).toBe(original);
    expect(
      (await h.exec(["ls", "/run/pulumi-hypervisor/deadman/bridge-br0-eth0/confirmed"])).code,
    ).toBe(0);
    // the timer is gone: the change stays
    expect(
      (
        await h.exec(["systemctl", "is-active", "pulumi-hypervisor-deadman-bridge-br0-eth0.timer"])
      ).stdout.trim(),
    ).not.toBe("active");
  }, 120_000);

  it("comes back after a reboot, and the provider reaches the host over br0", async () => {
    await closeAllHosts();
    const ms = await h.reboot();
    report(`reboot with br0 holding the uplink: SSH again after ${ms} ms`);
    expect(await mac("br0")).toBe(eth0Mac);
    expect(await addrs("br0")).toEqual([`${h.address}/24`]);
    expect(await master("eth0")).toBe("br0");
    // The bridge is in the stack: after a reboot `pulumi up` updates it (ifupdown recreated it at
    // boot, without the provider's link mark, which the update puts back).
    const { outs } = await lc.update("br0", props(), props());
    const r = await lc.read("br0", outs);
    expect(r.id).toBe("br0");
    // no drift after the reboot: the engine keeps the program's inputs
    expect(r.inputs).toBeUndefined();
    expect(r.props["ports"]).toEqual(["eth0"]);
    expect((await h.exec(["ip", "-d", "link", "show", "dev", "br0"])).stdout).toContain(
      "alias pulumi-hypervisor",
    );
  }, 180_000);

  it("delete gives eth0 its own stanza back, and its address after the next reboot", async () => {
    const r = await lc.read("br0", props());
    await lc.delete("br0", r.props);
    expect(await on(["cat", STANZA])).toBe(original);
    expect((await h.exec(["test", "-e", BRIDGE_STANZA])).code).toBe(1);
    expect((await h.exec(["test", "-e", "/etc/pulumi-hypervisor/bridge-nic/br0"])).code).toBe(1);
    expect(await addrs("eth0")).toEqual([`${h.address}/24`]);
    await closeAllHosts();
    const ms = await h.reboot();
    report(`reboot after delete: SSH again after ${ms} ms`);
    expect(await addrs("eth0")).toEqual([`${h.address}/24`]);
    expect((await h.exec(["ip", "link", "show", "dev", "br0"])).code).not.toBe(0);
  }, 180_000);
});

describe("the dead-man timer", () => {
  it("restores a host whose new management path does not answer, and the host is reachable again", async () => {
    await closeAllHosts();
    const original = await on(["cat", STANZA]);
    // The injected fault: a firewall on the host drops SSH arriving over the new bridge.
    await on([
      "nft",
      "add table inet inject; add chain inet inject input { type filter hook input priority 0; } ; add rule inet inject input iifname br0 tcp dport 22 drop",
    ]);
    const t0 = Date.now();
    let error = "";
    try {
      await lc.create({
        connection: h.connection(),
        name: "br0",
        ports: ["eth0"],
        addresses: [`${h.address}/24`],
        rollbackSeconds: 20,
      });
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    const failedAfter = Date.now() - t0;
    expect(error).toMatch(/the host rolled back to its previous network configuration by itself/);
    // the test's own new login, without the provider
    let reached = 0;
    for (let i = 0; i < 60 && reached === 0; i++) {
      const r = await h.ssh(["true"], { timeoutMs: 5000 }).catch(() => ({ code: -1 }));
      if (r.code === 0) reached = Date.now() - t0;
      else await new Promise((res) => setTimeout(res, 1000));
    }
    report(
      `rollback: the operation failed after ${failedAfter} ms; a new SSH login worked ${reached} ms after the change started (timer 20 s)`,
    );
    expect(reached).toBeGreaterThan(0);
    expect(await addrs("eth0")).toEqual([`${h.address}/24`]);
    expect(await master("eth0")).toBeUndefined();
    expect((await h.exec(["ip", "link", "show", "dev", "br0"])).code).not.toBe(0);
    expect(await on(["cat", STANZA])).toBe(original);
    expect((await h.exec(["test", "-e", BRIDGE_STANZA])).code).toBe(1);
    expect(await on(["cat", "/run/pulumi-hypervisor/deadman/bridge-br0-eth0/restore.log"])).toBe(
      "",
    );
    await on(["nft", "delete table inet inject"]);
  }, 180_000);
});
