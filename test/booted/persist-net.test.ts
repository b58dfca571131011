// Bridge, TapDevice and NatRule on a booted Debian 12 host (systemd as PID 1): each persists as
// its own oneshot unit, comes back after `systemctl reboot` with the same bridge MAC, addresses,
// tap master, routes, proxy ARP and nft table; refresh after the reboot finds no drift; a boot
// script edited by hand is reported and repaired by up; reads at once answer as reads one by one,
// with one systemctl per way of asking; delete then reboot leaves nothing; and
// `persistence: "none"` writes nothing persistent. Needs root, scripts/install-deps.sh and
// `npm run build`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NOT_OURS } from "../../provider/src/persist/persistence";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost } from "../../lab/booted/index";
import { Engine, type DynamicProviderPlugin, type ResourceSpec } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";
import { needDaemonReload, readsBothWays, systemdReloads } from "../support/booted";

const BR = "brpn0";
const TAP = "tpn0";
const ROUTED = "tpn1";
const NAT = "pn";
const TABLE = `pulumi_hv_${NAT}`;
const UNITS = [
  `pulumi-hypervisor-bridge-${BR}.service`,
  `pulumi-hypervisor-tap-${TAP}.service`,
  `pulumi-hypervisor-tap-${ROUTED}.service`,
  `pulumi-hypervisor-nat-${NAT}.service`,
];
const BOOT_SCRIPT = `/etc/pulumi-hypervisor/bridge/${BR}.sh`;

let h: BootedHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let initialForward: string;

function report(line: string): void {
  process.stderr.write(`persist-net: ${line}\n`);
}

async function run(argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} on ${h.name} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function code(argv: string[]): Promise<number> {
  return (await h.exec(argv)).code;
}

interface IpLink {
  ifname: string;
  address?: string;
  master?: string;
  flags: string[];
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
  ifalias?: string;
}

async function link(name: string): Promise<IpLink | undefined> {
  // -d: `ip addr` prints a link's ifalias only with details
  const r = await h.exec(["ip", "-d", "-j", "addr", "show", "dev", name]);
  return r.code === 0 ? (JSON.parse(r.stdout) as IpLink[])[0] : undefined;
}

const globalAddrs = (l: IpLink | undefined): string[] =>
  (l?.addr_info ?? [])
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();

/** What the test compares before and after a reboot, read on the host with ip, nft and /proc. */
async function snapshot() {
  const br = await link(BR);
  const tap = await link(TAP);
  const routed = await link(ROUTED);
  const nft = await h.exec(["nft", "list", "table", "ip", TABLE]);
  return {
    bridgeMac: br?.address,
    bridgeAddrs: globalAddrs(br),
    bridgeUp: br?.flags.includes("UP"),
    // the provider's mark: the boot scripts recreate the links marked as the provider's
    aliases: [br?.ifalias, tap?.ifalias, routed?.ifalias],
    tapMaster: tap?.master,
    tapUp: tap?.flags.includes("UP"),
    routedExists: routed !== undefined,
    route: (await run(["ip", "route", "show", "198.18.251.5/32"])).trim(),
    proxyArp: [
      (await run(["cat", `/proc/sys/net/ipv4/conf/${ROUTED}/proxy_arp`])).trim(),
      (await run(["cat", `/proc/sys/net/ipv4/conf/${h.uplink}/proxy_arp`])).trim(),
    ],
    ipForward: (await run(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim(),
    nftTable: nft.code === 0 ? nft.stdout.replace(/ # handle \d+/g, "") : undefined,
  };
}

async function specs(): Promise<ResourceSpec[]> {
  const connection = h.connection();
  return [
    await spec("Bridge", "br", { connection, name: BR, addresses: ["198.18.250.1/24"] }),
    await spec("TapDevice", "tap", { connection, name: TAP, bridge: BR }, ["br"]),
    await spec("TapDevice", "routed", {
      connection,
      name: ROUTED,
      routed: { addresses: ["198.18.251.5"], proxyArpInterface: h.uplink },
    }),
    await spec("NatRule", "nat", {
      connection,
      name: NAT,
      sourceCidr: "198.18.250.0/24",
      outInterface: h.uplink,
      masquerade: true,
      forward: true,
      portForwards: [
        {
          protocol: "tcp",
          hostPort: 8080,
          destination: "198.18.250.10",
          destinationPort: 80,
          inInterface: h.uplink,
        },
      ],
    }),
  ];
}

/** Waits until every unit finished at boot; returns the milliseconds it took from the call. */
async function waitForUnits(units: readonly string[], timeoutMs = 60_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    const r = await h.exec(["systemctl", "is-active", ...units]);
    const states = r.stdout.trim().split("\n");
    if (states.every((s) => s === "active")) return Date.now() - start;
    if (states.includes("failed")) {
      const log = await h.exec(["journalctl", "-b", "--no-pager", "-n", "40", "-u", "pulumi-*"]);
      throw new Error(`a unit failed at boot: ${states.join(" ")}\n${log.stdout}`);
    }
    if (Date.now() - start > timeoutMs) throw new Error(`units not active: ${states.join(" ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Returns the provider's files under /etc/pulumi-hypervisor and /etc/systemd/system. */
async function persistedFiles(): Promise<string[]> {
  const out = await run([
    "sh",
    "-c",
    "find /etc/pulumi-hypervisor /etc/systemd/system \\( -type f -o -type l \\) \\( -name '*pulumi-hypervisor*' -o -path '/etc/pulumi-hypervisor/*' \\) 2>/dev/null | sort",
  ]);
  return out.split("\n").filter((l) => l !== "");
}

beforeAll(async () => {
  h = await startHost(`pn${process.pid}`, {
    log: (l) => process.stderr.write(l + "\n"),
    owner: process.pid,
  });
  ({ plugin, engine } = await startEngine());
}, 900_000);

afterAll(async () => {
  await plugin?.stop();
  await h?.stop();
}, 120_000);

describe("Bridge, TapDevice and NatRule on a booted host", () => {
  let before: Awaited<ReturnType<typeof snapshot>>;

  it("creates the network and persists each object as its own enabled oneshot unit", async () => {
    initialForward = (await run(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim();
    const reloads = await systemdReloads(h);
    const { steps } = await engine.up(await specs());
    expect(steps.map((s) => s.op)).toEqual(["create", "create", "create", "create"]);
    // one reload of systemd's units per object (its enable's), and systemd has every unit as it
    // is on disk
    expect((await systemdReloads(h)) - reloads).toBe(UNITS.length);
    expect(await needDaemonReload(h, UNITS)).toEqual(UNITS.map(() => "no"));
    for (const s of engine.state.values()) {
      expect([s.name, s.outputs["persistedBy"], s.outputs["persistedDrift"]]).toEqual([
        s.name,
        "systemd",
        undefined,
      ]);
    }
    expect((await run(["systemctl", "is-enabled", ...UNITS])).trim().split("\n")).toEqual(
      UNITS.map(() => "enabled"),
    );
    const tapUnit = await run(["cat", `/etc/systemd/system/${UNITS[1]}`]);
    expect(tapUnit).toContain(`Wants=${UNITS[0]}\n`);
    expect(tapUnit).toContain(`After=${UNITS[0]} network-pre.target systemd-sysctl.service\n`);
    expect(await run(["stat", "-c", "%a", BOOT_SCRIPT])).toBe("644\n");
    before = await snapshot();
    expect(before).toMatchObject({
      bridgeAddrs: ["198.18.250.1/24"],
      bridgeUp: true,
      aliases: ["pulumi-hypervisor", "pulumi-hypervisor", "pulumi-hypervisor"],
      tapMaster: BR,
      routedExists: true,
      proxyArp: ["1", "1"],
      ipForward: "1",
    });
    expect(before.route).toContain(`dev ${ROUTED} proto static`);
    expect(before.nftTable).toContain("dnat to 198.18.250.10:80");
    expect(await run(["cat", `/etc/pulumi-hypervisor/bridge/${BR}.mac`])).toBe(
      `${before.bridgeMac}\n`,
    );
  });

  it("comes back after a reboot with the same MAC, addresses, master, routes and table", async () => {
    const started = Date.now();
    const sshMs = await h.reboot();
    const unitsMs = await waitForUnits(UNITS);
    report(
      `reboot: SSH answered after ${sshMs} ms, every unit active ${unitsMs} ms later (${Date.now() - started} ms in all)`,
    );
    expect(await snapshot()).toEqual(before);
  });

  it("finds no drift on refresh after the reboot", async () => {
    const { steps } = await engine.refresh();
    for (const s of steps) {
      const detail = s.detail as { inputsChanged?: boolean } | undefined;
      expect([s.name, detail?.inputsChanged ?? false]).toEqual([s.name, false]);
    }
    for (const s of engine.state.values()) {
      expect([s.name, s.outputs["persistedDrift"]]).toEqual([s.name, undefined]);
    }
  });

  it("reads the same in one batch as one by one, asking systemd twice for the batch", async () => {
    const states = [...engine.state.values()];
    // each unit its own answer: the tap's disabled meanwhile
    const reads = await readsBothWays(h, plugin, states, UNITS[1] ?? "");
    expect(reads.batched).toEqual(reads.alone);
    expect(reads.batched.map((r) => r.properties["persistedDrift"] !== undefined)).toEqual(
      states.map((s) => s.name === "tap"),
    );
    // alone: each probe's is-active and is-enabled; at once: one is-active (systemd-networkd and
    // the four units) and one list-unit-files
    expect(reads.systemctl).toEqual({ alone: 2 * states.length, batched: 2 });
  });

  it("reports a boot script edited by hand and live drift differently; up repairs both", async () => {
    await run(["sh", "-c", 'echo "ip link set dev $1 down" >> "$2"', "sh", BR, BOOT_SCRIPT]);
    await run(["ip", "link", "set", "dev", TAP, "nomaster"]);
    await engine.refresh();
    expect(engine.state.get("br")?.outputs["persistedDrift"]).toBe(`${BOOT_SCRIPT} ${NOT_OURS}`);
    expect(engine.state.get("br")?.inputs["persistence"]).toBe("none");
    expect(engine.state.get("tap")?.outputs["persistedDrift"]).toBe(
      `live state differs from the persisted form; its files match, so ${UNITS[1]} restores it at the next boot`,
    );
    expect(engine.state.get("tap")?.inputs["bridge"]).toBe(null);

    const { steps } = await engine.up(await specs());
    expect(steps.map((s) => [s.name, s.op])).toEqual([
      ["br", "update"],
      ["tap", "update"],
      ["routed", "same"],
      ["nat", "same"],
    ]);
    expect(await run(["cat", BOOT_SCRIPT])).not.toContain("down");
    expect((await link(TAP))?.master).toBe(BR);
    const after = await engine.refresh();
    for (const s of after.steps) {
      const detail = s.detail as { inputsChanged?: boolean } | undefined;
      expect([s.name, detail?.inputsChanged ?? false]).toEqual([s.name, false]);
    }
  });

  it("deletes units, files and live objects, and nothing comes back after a reboot", async () => {
    const reloads = await systemdReloads(h);
    await engine.destroy();
    // one reload per object, once its files are gone (its disable's own is skipped)
    expect((await systemdReloads(h)) - reloads).toBe(UNITS.length);
    const gone = async () => ({
      links: [await link(BR), await link(TAP), await link(ROUTED)],
      table: await code(["nft", "list", "table", "ip", TABLE]),
      files: await persistedFiles(),
      units: (await h.exec(["systemctl", "list-unit-files", "pulumi-hypervisor-*"])).stdout,
    });
    const want = {
      links: [undefined, undefined, undefined],
      table: 1,
      files: [],
      units: expect.stringContaining("0 unit files listed."),
    };
    expect(await gone()).toEqual(want);
    await h.reboot();
    expect(await gone()).toEqual(want);
    expect((await run(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim()).toBe(initialForward);
  });

  it('writes nothing persistent with persistence "none"', async () => {
    const connection = h.connection();
    const { steps } = await engine.up([
      await spec("Bridge", "br", {
        connection,
        name: BR,
        addresses: ["198.18.250.1/24"],
        persistence: "none",
      }),
      await spec("NatRule", "nat", {
        connection,
        name: NAT,
        sourceCidr: "198.18.250.0/24",
        outInterface: h.uplink,
        masquerade: true,
        persistence: "none",
      }),
    ]);
    expect(steps.map((s) => s.op)).toEqual(["create", "create"]);
    expect((await link(BR))?.address).toMatch(/^[0-9a-f:]{17}$/);
    expect(await persistedFiles()).toEqual([]);
    expect(engine.state.get("br")?.outputs["persistedBy"]).toBe("none");
    await engine.destroy();
    expect(await link(BR)).toBeUndefined();
  });

  it("creates and deletes taps at once, the taps sharing systemd's reloads, each one read", async () => {
    const connection = h.connection();
    const taps = ["tpn2", "tpn3", "tpn4", "tpn5", "tpn6", "tpn7"];
    const units = taps.map((t) => `pulumi-hypervisor-tap-${t}.service`);
    await engine.up([await spec("Bridge", "br", { connection, name: BR })]);
    // one engine per tap, all sent at once: Pulumi's up runs them together
    const engines = taps.map(() => new Engine(plugin));
    const reloads = await systemdReloads(h);
    await Promise.all(
      taps.map(async (t, i) =>
        engines[i]?.up([await spec("TapDevice", t, { connection, name: t, bridge: BR })]),
      ),
    );
    const created = (await systemdReloads(h)) - reloads;
    // Each tap's enable is known to the running systemd (multi-user.target wants it in memory,
    // which only a reload after its link was made gives), and its unit is the file on disk.
    const wanted = (await run(["systemctl", "show", "-p", "Wants", "--value", "multi-user.target"]))
      .trim()
      .split(" ");
    expect(units.filter((u) => !wanted.includes(u))).toEqual([]);
    expect(await needDaemonReload(h, units)).toEqual(units.map(() => "no"));
    expect(created).toBeGreaterThanOrEqual(1);
    expect(created).toBeLessThanOrEqual(taps.length);
    const before = await systemdReloads(h);
    await Promise.all(engines.map((e) => e.destroy()));
    const deleted = (await systemdReloads(h)) - before;
    const after = (await run(["systemctl", "show", "-p", "Wants", "--value", "multi-user.target"]))
      .trim()
      .split(" ");
    expect(units.filter((u) => after.includes(u))).toEqual([]);
    expect(deleted).toBeGreaterThanOrEqual(1);
    expect(deleted).toBeLessThanOrEqual(taps.length);
    report(
      `${taps.length} taps at once: ${created} reloads of systemd to create, ${deleted} to delete`,
    );
    await engine.destroy();
    expect(await persistedFiles()).toEqual([]);
  });

  it("refuses a routed tap on the SSH client's address and a forward of sshd's port, changing nothing", async () => {
    const connection = h.connection();
    await expect(
      engine.up([
        await spec("TapDevice", "hijack", {
          connection,
          name: "tpn9",
          routed: { addresses: [h.outsideAddress] },
        }),
      ]),
    ).rejects.toThrow(
      `routed.addresses: ${h.outsideAddress} is the address this SSH session comes from`,
    );
    await expect(
      engine.up([
        await spec("NatRule", "ssh", {
          connection,
          name: "pnssh",
          sourceCidr: "198.18.250.0/24",
          outInterface: h.uplink,
          portForwards: [
            { protocol: "tcp", hostPort: 22, destination: "198.18.250.10", destinationPort: 22 },
          ],
        }),
      ]),
    ).rejects.toThrow("portForwards[0]: sshd listens on tcp port 22");
    expect(await link("tpn9")).toBeUndefined();
    expect(await code(["nft", "list", "table", "ip", "pulumi_hv_pnssh"])).toBe(1);
    expect(await persistedFiles()).toEqual([]);
  });
});
