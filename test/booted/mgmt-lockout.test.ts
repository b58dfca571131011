// Issue 11's lockouts on a booted host whose client is off-link: the host holds a /32 and reaches
// everything (the test machine included) through `default via GW dev eth0 onlink`, as a rented
// server does. Each case either works and a new SSH login proves it, or is refused with nothing
// changed, or is rolled back by the host's dead-man timer and the host is reachable again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost, stopOrphanedHosts } from "../../lab/booted/index";
import { Lifecycle } from "../../provider/src/lifecycle";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { bridgeModule } from "../../provider/src/resources/bridge/index";

let h: BootedHost;
let gateway = "";
const lc = new Lifecycle(bridgeModule, hostFor);

function report(line: string): void {
  process.stderr.write(`mgmt lockout: ${line}\n`);
}

async function on(argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function master(dev: string): Promise<string | undefined> {
  return (
    JSON.parse(await on(["ip", "-j", "link", "show", "dev", dev])) as Array<{ master?: string }>
  )[0]?.master;
}

async function defaultRoute(): Promise<{ dev?: string; gateway?: string; flags?: string[] }> {
  const all = JSON.parse(await on(["ip", "-j", "route", "show", "default"])) as Array<{
    dev?: string;
    gateway?: string;
    flags?: string[];
  }>;
  return all[0] ?? {};
}

// Returns the milliseconds until the test's own new SSH login works (0: it never did).
async function reachable(from: number): Promise<number> {
  for (let i = 0; i < 60; i++) {
    const r = await h.ssh(["true"], { timeoutMs: 5000 }).catch(() => ({ code: -1 }));
    if (r.code === 0) return Date.now() - from;
    await new Promise((res) => setTimeout(res, 1000));
  }
  return 0;
}

const base = (): Record<string, unknown> => ({
  connection: h.connection(),
  name: "br0",
  addresses: [`${h.address}/32`],
  nicManager: "none",
  rollbackSeconds: 15,
});

beforeAll(async () => {
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  h = await startHost(`ml${process.pid}`, { owner: process.pid });
  gateway = h.outsideAddress;
  // The rented-server shape, set up over nsenter so no SSH session depends on it.
  await on([
    "sh",
    "-c",
    'ip addr del "$1/24" dev eth0 && ip addr add "$1/32" dev eth0 && ip route add default via "$2" dev eth0 onlink proto static metric 100',
    "sh",
    h.address,
    gateway,
  ]);
  await on(["ip", "link", "add", "vh0", "type", "veth", "peer", "name", "vh1"]);
}, 600_000);

afterAll(async () => {
  await closeAllHosts();
  await h?.stop();
}, 120_000);

describe("lockouts with an off-link client", () => {
  it("5: refuses stp on a bridge that would carry the session, changing nothing", async () => {
    await expect(lc.create({ ...base(), ports: ["eth0"], stp: true })).rejects.toThrow(
      /stp on bridge br0, which carries this SSH session, would block all its traffic/,
    );
    expect((await h.exec(["ip", "link", "show", "dev", "br0"])).code).not.toBe(0);
    expect(await master("eth0")).toBeUndefined();
  }, 60_000);

  it("2: an onlink default route moves with the /32 onto the bridge and back, every attribute kept", async () => {
    const t0 = Date.now();
    await lc.create({ ...base(), ports: ["eth0"] });
    report(`onlink takeover confirmed over a new login in ${Date.now() - t0} ms`);
    expect(await defaultRoute()).toMatchObject({ dev: "br0", gateway, flags: ["onlink"] });
    expect(await reachable(Date.now())).toBeGreaterThan(0);
    const r = await lc.read("br0", { ...base(), ports: ["eth0"] });
    await lc.delete("br0", r.props);
    expect(await defaultRoute()).toMatchObject({ dev: "eth0", gateway, flags: ["onlink"] });
    expect(await reachable(Date.now())).toBeGreaterThan(0);
  }, 120_000);

  // Updates br0's ports to [vh0], which cuts the session; the host must roll back by itself.
  async function rolledBack(from: string): Promise<void> {
    const t0 = Date.now();
    let error = "";
    await lc.update("br0", {}, { ...base(), ports: ["vh0"] }).catch((e: unknown) => {
      error = e instanceof Error ? e.message : String(e);
    });
    const failed = Date.now() - t0;
    expect(error).toMatch(/the host rolled back to its previous network configuration by itself/);
    const back = await reachable(t0);
    report(
      `ports ${from} -> [vh0]: failed after ${failed} ms, new SSH login ${back} ms after the change started (timer 15 s)`,
    );
    expect(back).toBeGreaterThan(0);
    expect(await master("eth0")).toBe("br0");
    expect(await defaultRoute()).toMatchObject({ dev: "br0", gateway, flags: ["onlink"] });
  }

  it("1: detaching eth0 from the session's bridge ([eth0, vh0] to [vh0]) is rolled back by the host", async () => {
    await lc.create({ ...base(), ports: ["eth0", "vh0"] });
    expect(await master("eth0")).toBe("br0");
    await rolledBack("[eth0, vh0]");
  }, 180_000);

  it("1: moving the session's bridge off its only port ([eth0] to [vh0]) is rolled back by the host", async () => {
    // Deleting a bridge that carries the session while it has two ports is refused, so drop vh0.
    await lc.update("br0", {}, { ...base(), ports: ["eth0"] });
    expect(await master("vh0")).toBeUndefined();
    expect(await master("eth0")).toBe("br0");
    await rolledBack("[eth0]");
    // the restore also detached the port the change had attached
    expect(await master("vh0")).toBeUndefined();
  }, 180_000);
});
