// Half-done operations on a lab host: a connection that drops mid-apply, and two conflicting
// creates at once, driven through the dynamic-provider plugin the way the engine does.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labGuestNet, startLab, type Lab, type LabHost } from "../../lab";
import {
  PluginError,
  urnOf,
  type DynamicProviderPlugin,
  type Engine,
} from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";

const LAB = "phalf";
const NET = labGuestNet(0);

let lab: Lab;
let h: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

beforeAll(async () => {
  lab = await startLab({ name: LAB, hosts: 1 });
  h = lab.hosts[0]!;
  ({ plugin, engine } = await startEngine());
});

afterAll(async () => {
  await plugin?.stop();
  await lab?.stop();
});

async function sh(script: string, ...args: string[]): Promise<string> {
  const r = await h.exec(["sh", "-c", script, "sh", ...args]);
  if (r.code !== 0) throw new Error(`${script} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function exists(name: string): Promise<boolean> {
  return (await h.exec(["ip", "link", "show", "dev", name])).code === 0;
}

/** Kills the lab sshd's session processes (its children, by pid): every SSH connection drops. */
function dropConnections(): number {
  const r = spawnSync("pgrep", ["-P", String(h.sshdPid)], { encoding: "utf8" });
  const pids = r.stdout.split("\n").filter((p) => /^\d+$/.test(p));
  for (const pid of pids) process.kill(Number(pid), "SIGKILL");
  return pids.length;
}

describe("half-done operations", () => {
  it("a connection dropped mid-apply records the tap, and destroy removes it", async () => {
    // The routed tap's plan creates the tap, then claims ip_forward under the sysctl claims'
    // flock: holding that lock here stops the batch on the host after its first steps, and that
    // is when every SSH connection drops.
    const uplink = (await sh(`ip -j route get "$1"`, h.controllerAddress)).match(
      /"dev":"([^"]+)"/,
    )?.[1];
    if (!uplink) throw new Error("no route from the lab host to the controller");
    const forward = (await sh("cat /proc/sys/net/ipv4/ip_forward")).trim();
    const holding = h.exec([
      "sh",
      "-c",
      "mkdir -p /run/pulumi-hypervisor/sysctl && : > /tmp/hold && " +
        "exec flock /run/pulumi-hypervisor/sysctl/.lock sh -c 'while [ -e /tmp/hold ]; do sleep 0.05; done'",
    ]);
    while ((await h.exec(["test", "-e", "/tmp/hold"])).code !== 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const tap = await spec("TapDevice", "htap0", {
      connection: h.connection(),
      name: "htap0",
      routed: { addresses: [`${NET}.5`], proxyArpInterface: uplink },
    });
    const creating = engine.up([tap]).catch((e: unknown) => e);
    let dropped = 0;
    for (let i = 0; i < 500 && dropped === 0; i++) {
      if (await exists("htap0")) {
        await new Promise((r) => setTimeout(r, 300)); // the batch is now waiting for the flock
        dropped = dropConnections();
      } else await new Promise((r) => setTimeout(r, 20));
    }
    const err = await creating;
    await sh("rm -f /tmp/hold");
    await holding;
    expect(dropped).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(PluginError);
    const message = (err as PluginError).message;
    expect(message).toContain(
      `tap device "htap0" on root@${h.address}:${h.port}: connection lost applying from step 1 of `,
    );
    expect(message).not.toContain("apply-batch.sh");
    expect(engine.state.get("htap0")?.id).toBe("htap0");
    expect(engine.state.get("htap0")?.initErrors?.length).toBe(1);
    expect(await exists("htap0")).toBe(true);

    await engine.destroy();
    expect(await exists("htap0")).toBe(false);
    expect((await sh("cat /proc/sys/net/ipv4/ip_forward")).trim()).toBe(forward);
    expect(engine.state.size).toBe(0);
  });

  it("two DnsmasqInstances on one interface created at once: one daemon, a clear error for the other", async () => {
    await engine.up([
      await spec("Bridge", "hbr1", {
        connection: h.connection(),
        name: "hbr1",
        addresses: [`${NET}.1/24`],
      }),
    ]);
    const dns = async (name: string): Promise<Record<string, unknown>> =>
      (
        await spec("DnsmasqInstance", name, {
          connection: h.connection(),
          name,
          interface: "hbr1",
          dhcpRange: { start: `${NET}.100`, end: `${NET}.150` },
        })
      ).inputs;
    const type = "pulumi-nodejs:dynamic/hypervisor:DnsmasqInstance";
    const inputs = [await dns("hdns-a"), await dns("hdns-b")];
    const checked = await Promise.all(
      inputs.map(async (i, n) => (await plugin.check(urnOf(type, `hdns-${n}`), {}, i)).inputs),
    );
    const results = await Promise.allSettled(
      checked.map((i, n) => plugin.create(urnOf(type, `hdns-${n}`), i)),
    );
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = results.flatMap((r) => (r.status === "rejected" ? [r.reason as Error] : []));
    expect(ok.length).toBe(1);
    expect(failed.length).toBe(1);
    const winner = ok[0]!.id;
    const loser = winner === "hdns-a" ? "hdns-b" : "hdns-a";
    expect(failed[0]!.message).toContain(
      `dnsmasq instance "${loser}" on root@${h.address}:${h.port}: interface hbr1 is already served by dnsmasq instance "${winner}"; one instance per interface`,
    );
    const daemons = await sh(
      `pgrep -a dnsmasq | grep -c -- "pulumi-hypervisor/dnsmasq/hdns-" || true`,
    );
    expect(daemons.trim()).toBe("1");

    const won = ok[0]!;
    await plugin.delete(won.id, urnOf(type, "x"), won.properties);
    await engine.destroy();
    const locks = await sh(`ls /run/pulumi-hypervisor/locks`);
    // the lock files stay (flock needs them); no operation is left holding one (a holder ends
    // within half a second of its session closing)
    await new Promise((r) => setTimeout(r, 1500));
    const left = await sh(`ls /run/pulumi-hypervisor/locks`);
    expect(left.split("\n").filter((f) => f.startsWith("op."))).toEqual([]);
    // and no key names a holder any more
    expect(await sh(`find /run/pulumi-hypervisor/locks -name '*.since' ! -empty`)).toBe("");
    expect(locks).toContain("interface.hbr1.lock");
  });
});
