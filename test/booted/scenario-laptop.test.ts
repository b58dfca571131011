// Write-up 1 end to end on a booted Debian host that really reboots: the laptop network (a bridge
// with the gateway address, dnsmasq with a static lease, NAT out of the WAN with a port forward, a
// tap) and a TCG guest on it. After `systemctl reboot` the guest is reachable again through the
// port forward from the WAN side (the test process) without Pulumi; a refresh finds no drift; a
// delete followed by a reboot leaves nothing that comes back. Needs root and the booted lab.
import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BootedHost } from "../../lab/booted/booted-host";
import { startHost, stopOrphanedHosts } from "../../lab/booted/index";
import type { DynamicProviderPlugin, Engine, ResourceSpec } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";
import { buildGuestImage, guestKernelArgs } from "../support/guest-image";
import { failedProviderUnits, LEFTOVER_FILES, sshOk as sshOkOn } from "../support/booted";

// The guest network inside the host; nothing outside the host routes to it.
const NET = "198.18.150";
const GUEST = { mac: "52:54:00:5c:00:10", ip: `${NET}.10`, hostname: "g1" };
const FORWARD_PORT = 8080;
// Where the guest's kernel and initramfs live on the host's disk (they survive its reboots).
const IMAGE_DIR = "/var/lib/hv-scenario";
// Resource names, each also the object's name on the host, so that units can be matched by name.
const NAMES = { bridge: "brlan", tap: "tapg1", dhcp: "lan", nat: "lannat", guest: "g1" };

let h: BootedHost | undefined;
let plugin: DynamicProviderPlugin | undefined;
let engine: Engine;
let kernel = "";
let initrd = "";

function report(line: string): void {
  process.stderr.write(`scenario laptop: ${line}\n`);
}

function host(): BootedHost {
  if (h === undefined) throw new Error("the booted host did not start");
  return h;
}

function wan(): NonNullable<BootedHost["wan"]> {
  const w = host().wan;
  if (w === undefined) throw new Error("the booted host has no WAN");
  return w;
}

const sshOk = (argv: string[]): Promise<string> => sshOkOn(host(), argv);

async function program(): Promise<ResourceSpec[]> {
  const connection = host().connection();
  return [
    await spec("Bridge", NAMES.bridge, {
      connection,
      name: NAMES.bridge,
      addresses: [`${NET}.1/24`],
    }),
    await spec("TapDevice", NAMES.tap, { connection, name: NAMES.tap, bridge: NAMES.bridge }, [
      NAMES.bridge,
    ]),
    await spec(
      "DnsmasqInstance",
      NAMES.dhcp,
      {
        connection,
        name: NAMES.dhcp,
        interface: NAMES.bridge,
        subnet: `${NET}.0/24`,
        dhcpRange: { start: `${NET}.100`, end: `${NET}.150`, leaseTime: "1h" },
        staticLeases: [GUEST],
        router: `${NET}.1`,
      },
      [NAMES.bridge],
    ),
    await spec(
      "NatRule",
      NAMES.nat,
      {
        connection,
        name: NAMES.nat,
        sourceCidr: `${NET}.0/24`,
        outInterface: wan().interface,
        masquerade: true,
        forward: true,
        portForwards: [
          {
            protocol: "tcp",
            hostPort: FORWARD_PORT,
            destination: GUEST.ip,
            destinationPort: 80,
            inInterface: wan().interface,
          },
        ],
      },
      [NAMES.bridge],
    ),
    await spec(
      "QemuGuest",
      NAMES.guest,
      {
        connection,
        name: NAMES.guest,
        memoryMiB: 160,
        accel: "tcg",
        kernel,
        initrd,
        kernelArgs: guestKernelArgs({ hostname: GUEST.hostname }),
        nics: [{ mac: GUEST.mac, tap: NAMES.tap }],
        shutdownTimeoutSeconds: 5,
      },
      [NAMES.tap, NAMES.dhcp, NAMES.nat],
    ),
  ];
}

/** Returns the body of GET http://address:port/, or undefined when nothing answered in time. */
function httpGet(address: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: address, port, path: "/", timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve(res.statusCode === 200 ? body : undefined));
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
  });
}

/** Returns the milliseconds until the guest's web page answered through the port forward. */
async function waitForGuestThroughForward(timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    const body = await httpGet(wan().address, FORWARD_PORT, 2_000);
    if (body === `hv-guest ${GUEST.hostname}\n`) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      const units = await host().ssh([
        "systemctl",
        "--no-pager",
        "--all",
        "list-units",
        "pulumi-hypervisor-*",
      ]);
      throw new Error(
        `the guest did not answer on ${wan().address}:${FORWARD_PORT} within ${timeoutMs} ms ` +
          `(last body ${JSON.stringify(body)}); units:\n${units.stdout}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Returns the provider's unit files on the host with their `systemctl is-enabled` state. */
async function providerUnits(): Promise<Record<string, string>> {
  const argv = ["systemctl", "list-unit-files", "--no-legend", "--plain", "pulumi-hypervisor-*"];
  const r = await host().ssh(argv);
  // systemd 252 exits 1 when no unit file matches the pattern: that is the answer "none".
  if (r.code !== 0 && !(r.code === 1 && r.stdout.trim() === "")) {
    throw new Error(`${argv.join(" ")} on ${host().name} exited ${r.code}: ${r.stderr}`);
  }
  const out = r.stdout;
  const units: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const [unit, state] = line.trim().split(/\s+/);
    if (unit !== undefined && unit !== "" && state !== undefined) units[unit] = state;
  }
  return units;
}

/** Returns the unit of the object named name (the kind in its name is the resource's business). */
function unitOf(units: Record<string, string>, name: string): string | undefined {
  return Object.keys(units).find((u) =>
    new RegExp(`^pulumi-hypervisor-[a-z-]+-${name}\\.service$`).test(u),
  );
}

async function linkJson(
  name: string,
): Promise<{ address?: string; operstate?: string; master?: string }> {
  const r = await host().ssh(["ip", "-j", "link", "show", "dev", name]);
  if (r.code !== 0)
    throw new Error(`ip link show ${name} on ${host().name} exited ${r.code}: ${r.stderr}`);
  return (
    (JSON.parse(r.stdout) as Array<{ address?: string; operstate?: string; master?: string }>)[0] ??
    {}
  );
}

beforeAll(async () => {
  for (const name of await stopOrphanedHosts()) report(`removed ${name}, left by an ended run`);
  const image = await buildGuestImage();
  h = await startHost(`scl${process.pid}`, {
    owner: process.pid,
    links: ["wan"],
    log: (l) => process.stderr.write(l + "\n"),
  });
  report(`${h.name}: SSH answered ${h.sshAfterStartMs} ms after start`);
  // The guest's boot files go onto the host's disk (its overlay, mounted on this machine).
  const dir = path.join(h.stateDir, "root", IMAGE_DIR);
  await fs.mkdir(dir, { recursive: true });
  kernel = `${IMAGE_DIR}/vmlinuz`;
  initrd = `${IMAGE_DIR}/initrd.cpio.gz`;
  await fs.copyFile(image.kernel, path.join(dir, "vmlinuz"));
  await fs.copyFile(image.initrd, path.join(dir, "initrd.cpio.gz"));
  ({ plugin, engine } = await startEngine());
}, 600_000);

afterAll(async () => {
  await plugin?.stop();
  await h?.stop();
}, 120_000);

describe("write-up 1 (a laptop's guest network with a guest) on a booted host that reboots", () => {
  it("creates the network and the guest, persisted by systemd, and the WAN reaches the guest through the port forward", async () => {
    const { steps } = await engine.up(await program());
    expect(steps.map((s) => `${s.op} ${s.name}`)).toEqual([
      `create ${NAMES.bridge}`,
      `create ${NAMES.tap}`,
      `create ${NAMES.dhcp}`,
      `create ${NAMES.nat}`,
      `create ${NAMES.guest}`,
    ]);
    const ms = await waitForGuestThroughForward(120_000);
    report(`up to the guest answering through the port forward: ${ms} ms`);
    for (const name of Object.values(NAMES)) {
      expect([name, engine.state.get(name)?.outputs["persistedBy"]]).toEqual([name, "systemd"]);
    }
    const units = await providerUnits();
    for (const name of Object.values(NAMES)) {
      const unit = unitOf(units, name);
      expect([name, unit !== undefined ? units[unit] : "no unit"]).toEqual([name, "enabled"]);
    }
    // The dnsmasq and QEMU units pull in their bridge's and taps' units when they start; those
    // find the live links there and are skipped, never failed.
    expect(await failedProviderUnits(host())).toBe("");
  });

  it("brings everything back by itself after a reboot: the guest answers through the port forward again", async () => {
    const bridgeBefore = await linkJson(NAMES.bridge);
    const rebootMs = await host().reboot();
    report(`${host().name}: reboot cycle (systemctl reboot to SSH answering) ${rebootMs} ms`);
    const afterSsh = await waitForGuestThroughForward(120_000);
    report(
      `boot to the guest reachable through the port forward: ${rebootMs + afterSsh} ms from ` +
        `systemctl reboot (${afterSsh} ms after SSH answered)`,
    );

    // The bridge came back with the same MAC (a new random one would break the guests' ARP caches
    // and the DHCP server's view) and the tap on it.
    const bridgeAfter = await linkJson(NAMES.bridge);
    expect(bridgeAfter.address).toBe(bridgeBefore.address);
    expect((await linkJson(NAMES.tap)).master).toBe(NAMES.bridge);
    const addrs = JSON.parse(
      await sshOk(["ip", "-j", "-4", "addr", "show", "dev", NAMES.bridge]),
    ) as Array<{
      addr_info: Array<{ local: string; prefixlen: number }>;
    }>;
    expect(addrs[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${NET}.1/24`]);
    const tables = await sshOk(["nft", "list", "tables"]);
    expect(tables).toContain(`pulumi_hv_${NAMES.nat}`);
    expect((await sshOk(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim()).toBe("1");
    // Every unit ran at boot; none failed.
    expect(await failedProviderUnits(host())).toBe("");
  });

  it("refresh after the reboot finds no drift, and up has nothing to do", async () => {
    const { steps } = await engine.refresh();
    const drift = steps.filter(
      (s) =>
        s.op === "refresh-gone" ||
        (s.op === "refresh-changed" &&
          (s.detail as { inputsChanged?: boolean } | undefined)?.inputsChanged === true),
    );
    expect(drift).toEqual([]);
    // The persisted layer (unit files, boot scripts, enablement) matches too: no drift reported.
    for (const name of Object.values(NAMES)) {
      const outputs = engine.state.get(name)?.outputs ?? {};
      expect([name, outputs["persistedBy"], outputs["persistedDrift"]]).toEqual([
        name,
        "systemd",
        undefined,
      ]);
    }
    expect((await engine.up(await program())).steps.map((s) => `${s.op} ${s.name}`)).toEqual(
      Object.values(NAMES).map((n) => `same ${n}`),
    );
  });

  it("delete then reboot leaves no bridge, tap, process, table, unit or file", async () => {
    const { steps } = await engine.destroy();
    expect(steps.map((s) => s.op)).toEqual(["delete", "delete", "delete", "delete", "delete"]);
    const rebootMs = await host().reboot();
    report(`${host().name}: reboot after delete ${rebootMs} ms`);
    // Let every unit that might still be there run before looking.
    await host().ssh(["systemctl", "is-system-running", "--wait"], { timeoutMs: 60_000 });

    for (const link of [NAMES.bridge, NAMES.tap]) {
      const r = await host().ssh(["ip", "link", "show", "dev", link]);
      expect([link, r.code]).toEqual([link, 1]);
    }
    const processes = await host().ssh(["pgrep", "-a", "^(dnsmasq|qemu-system)"]);
    expect(processes.stdout).toBe("");
    expect(await sshOk(["nft", "list", "tables"])).not.toContain("pulumi_hv_");
    expect(await providerUnits()).toEqual({});
    // Nothing of the provider is left on disk either.
    const files = await sshOk(["sh", "-c", LEFTOVER_FILES]);
    expect(files).toBe("");
  });
});
