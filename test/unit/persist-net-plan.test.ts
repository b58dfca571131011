// The persisted layer of Bridge, TapDevice and NatRule: exact plans with systemd present and
// absent, with persistence "none", and with drift; the boot script is the create plan's steps.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProbe } from "../../provider/src/host/probe";
import {
  contentHash,
  reloadUnitsStep,
  type PersistedState,
  NOT_OURS,
} from "../../provider/src/persist/persistence";
import { renderBootScript } from "../../provider/src/persist/systemd-unit";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { NO_MANAGERS } from "../../provider/src/resources/bridge/manager";
import { absentBridge, planBridge, planBridgeLive } from "../../provider/src/resources/bridge/plan";
import {
  BridgeInputs,
  type BridgeState,
  type Link,
} from "../../provider/src/resources/bridge/schema";
import { natRuleModule } from "../../provider/src/resources/nat-rule";
import { parseNatRuleState } from "../../provider/src/resources/nat-rule/observe";
import { planNatRule, planNatRuleLive } from "../../provider/src/resources/nat-rule/plan";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { planTapDevice, planTapDeviceLive } from "../../provider/src/resources/tap-device/plan";
import {
  TapDeviceInputs,
  type TapDeviceState,
} from "../../provider/src/resources/tap-device/schema";
import type { Step } from "../../provider/src/step";
import { tapProbeCapture } from "../support/tap-fixtures";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");
const dir = mkdtempSync(join(tmpdir(), "hv-persist-net-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The persisted layer as persist_probe reports it; files by content (undefined: absent). */
function layer(
  unit: string,
  files: Record<string, string | undefined>,
  o: { systemd?: boolean; enabled?: string; active?: string } = {},
): PersistedState {
  const systemd = o.systemd ?? true;
  return {
    systemd,
    unit,
    enabled: systemd ? (o.enabled ?? "not-found") : "",
    active: systemd ? (o.active ?? "inactive") : "",
    files: Object.fromEntries(
      Object.entries(files).map(([p, c]) => [p, c === undefined ? undefined : contentHash(c)]),
    ),
  };
}

/** Returns the write steps of the files a plan persists, by path. */
function written(steps: Step[]): Record<string, string> {
  return Object.fromEntries(
    steps.flatMap((s) => ("writeFile" in s ? [[s.writeFile.path, s.writeFile.content]] : [])),
  );
}

const reload = reloadUnitsStep;
const enable = (unit: string) => ({
  summary: `enable ${unit} so it runs at boot`,
  argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", unit],
});
const unpersist = (unit: string, files: string[]) => [
  {
    summary: `disable and stop ${unit}`,
    argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", unit],
  },
  { summary: `remove ${files.join(", ")}`, argv: ["rm", "-f", "--", ...files] },
  reload,
];

describe("Bridge", () => {
  const unit = "pulumi-hypervisor-bridge-br9.service";
  const unitFile = `/etc/systemd/system/${unit}`;
  const script = "/etc/pulumi-hypervisor/bridge/br9.sh";
  const mac = "/etc/pulumi-hypervisor/bridge/br9.mac";
  const absentFiles = { [unitFile]: undefined, [script]: undefined, [mac]: undefined };
  const d = BridgeInputs.parse({ name: "br9", addresses: ["198.18.90.1/24"] });
  const absent = (persisted: PersistedState): BridgeState =>
    // No network manager owns a NIC here: a bridge without ports is the provider's alone.
    absentBridge("br9", persisted, NO_MANAGERS, { networkManager: false, networkd: false });
  const br9: Link = {
    name: "br9",
    ifIndex: 9,
    macAddress: "9a:00:00:00:00:09",
    mtu: 1500,
    up: true,
    kind: "bridge",
    master: undefined,
    addresses: ["198.18.90.1/24"],
    stp: false,
    vlanFiltering: false,
    ifalias: "pulumi-hypervisor",
  };
  const present = (persisted: PersistedState): BridgeState => ({
    ...absent(persisted),
    bridge: br9,
    links: { br9 },
    macPinned: true,
  });
  const liveCreate: Step[] = [
    {
      summary: "create bridge br9",
      argv: ["ip", "link", "add", "name", "br9", "type", "bridge", "stp_state", "0"],
    },
    {
      summary: "mark br9 as created by pulumi-hypervisor (ifalias)",
      argv: ["ip", "link", "set", "dev", "br9", "alias", "pulumi-hypervisor"],
    },
    {
      summary: "pin br9's mac address, so ports joining or leaving do not change it",
      script: { name: "resources/bridge/bridge-pin-mac.sh", args: ["br9", mac] },
    },
    { summary: "bring br9 up", argv: ["ip", "link", "set", "dev", "br9", "up"] },
    {
      summary: "add address 198.18.90.1/24 to br9",
      argv: ["ip", "addr", "add", "198.18.90.1/24", "dev", "br9"],
    },
  ];
  const unitText = [
    "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.",
    "[Unit]",
    "Description=pulumi-hypervisor bridge br9",
    "After=network-pre.target systemd-sysctl.service",
    "Before=network.target",
    // a dnsmasq or QEMU unit that pulls it in after the live create finds it there: skipped
    "ConditionPathExists=!/sys/class/net/br9",
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=/bin/sh ${script}`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  const bootScript = renderBootScript("pulumi-hypervisor bridge br9", liveCreate);
  // After the create: the unit is enabled (it runs at the next boot), the files match.
  const persistedNow = layer(
    unit,
    { [unitFile]: unitText, [script]: bootScript, [mac]: "9a:00:00:00:00:09\n" },
    { enabled: "enabled" },
  );

  it("with systemd: creates live, then writes the unit and a boot script of the same steps", () => {
    expect(planBridge(d, absent(layer(unit, absentFiles)))).toEqual([
      ...liveCreate,
      {
        summary: `persist ${unitFile}`,
        writeFile: { path: unitFile, content: unitText, mode: 0o644 },
      },
      {
        summary: `persist ${script}`,
        writeFile: { path: script, content: bootScript, mode: 0o644 },
      },
      enable(unit),
      reload,
    ]);
  });

  it("without systemd: exactly today's plan, the MAC pinned without a file", () => {
    const s = absent(layer(unit, absentFiles, { systemd: false }));
    expect(planBridge(d, s)).toEqual(planBridgeLive(d, s));
    expect(planBridge(d, s)[2]).toEqual({
      summary: "pin br9's mac address, so ports joining or leaving do not change it",
      script: { name: "resources/bridge/bridge-pin-mac.sh", args: ["br9"] },
    });
    const after = present(layer(unit, absentFiles, { systemd: false }));
    expect(planBridge(d, after)).toEqual([]);
    expect(bridgeModule.outputs({ ...after, inputs: d })).toMatchObject({
      persistedBy: "none",
      persistedDrift: undefined,
    });
  });

  it("is empty once created, the recorded MAC being the live one", () => {
    expect(planBridge(d, present(persistedNow))).toEqual([]);
    expect(bridgeModule.outputs({ ...present(persistedNow), inputs: d })).toMatchObject({
      persistedBy: "systemd",
      persistedDrift: undefined,
    });
    expect(bridgeModule.observedInputs(present(persistedNow), d)["persistence"]).toBe("auto");
  });

  it("reads the MAC recorded in the outputs as the file's: no drift on refresh", () => {
    // refresh and delete parse the inputs from the outputs, where macAddress is the observed MAC
    const fromOutputs = BridgeInputs.parse({ ...d, macAddress: "9a:00:00:00:00:09" });
    expect(planBridge(fromOutputs, present(persistedNow))).toEqual([]);
    expect(bridgeModule.outputs({ ...present(persistedNow), inputs: fromOutputs })).toMatchObject({
      persistedBy: "systemd",
      persistedDrift: undefined,
    });
  });

  it("rewrites only a boot script edited by hand, and says so apart from live drift", () => {
    const edited = { ...persistedNow, files: { ...persistedNow.files, [script]: "0".repeat(64) } };
    expect(planBridge(d, present(edited))).toEqual([
      {
        summary: `persist ${script}`,
        writeFile: { path: script, content: bootScript, mode: 0o644 },
      },
    ]);
    expect(bridgeModule.outputs({ ...present(edited), inputs: d })["persistedDrift"]).toBe(
      `${script} ${NOT_OURS}`,
    );
    // refresh shows the persisted layer's drift as an input, so the next up repairs it
    expect(bridgeModule.observedInputs(present(edited), d)["persistence"]).toBe("none");
    const noAddress = { ...present(persistedNow), bridge: { ...br9, addresses: [] } };
    expect(bridgeModule.outputs({ ...noAddress, inputs: d })["persistedDrift"]).toBe(
      `live state differs from the persisted form; its files match, so ${unit} restores it at the next boot`,
    );
    expect(bridgeModule.observedInputs(noAddress, d)["persistence"]).toBe("auto");
  });

  it("keeps a live update minimal and rewrites the boot script in the same apply", () => {
    const d2 = BridgeInputs.parse({ name: "br9", addresses: ["198.18.90.1/24", "198.18.91.1/24"] });
    const steps = planBridge(d2, present(persistedNow));
    expect(steps.map((s) => s.summary)).toEqual([
      "add address 198.18.91.1/24 to br9",
      `persist ${script}`,
    ]);
    expect(written(steps)[script]).toContain("\nip addr add 198.18.91.1/24 dev br9 </dev/null;");
  });

  it('removes the unit and files with persistence "none" and on delete', () => {
    const none = BridgeInputs.parse({ ...d, persistence: "none" });
    expect(planBridge(none, present(persistedNow))).toEqual(
      unpersist(unit, [unitFile, script, mac]),
    );
    expect(bridgeModule.observedInputs(present(persistedNow), none)["persistence"]).toBe("auto");
    expect(planBridge(undefined, present(persistedNow))).toEqual([
      ...unpersist(unit, [unitFile, script, mac]),
      { summary: "delete bridge br9", argv: ["ip", "link", "del", "dev", "br9", "type", "bridge"] },
    ]);
    expect(planBridge(none, absent(layer(unit, absentFiles))).map((s) => s.summary)).toEqual(
      liveCreate.map((s) => s.summary),
    );
  });

  it("renders an explicit MAC into the boot script; leaves bridges with ports to the host's network manager", () => {
    const withMac = BridgeInputs.parse({ ...d, macAddress: "52:54:00:00:09:09" });
    const steps = planBridge(withMac, absent(layer(unit, absentFiles)));
    expect(written(steps)[script]).toContain(
      "\nip link add name br9 address 52:54:00:00:09:09 type bridge stp_state 0 </dev/null;",
    );
    expect(written(steps)[script]).not.toContain("bridge-pin-mac");
    expect(Object.keys(written(steps))).toEqual([unitFile, script]);
    const withPort = BridgeInputs.parse({ ...d, ports: ["eno1"] });
    const s: BridgeState = {
      ...absent(layer(unit, absentFiles)),
      links: { eno1: { ...br9, name: "eno1", kind: undefined, addresses: [] } },
    };
    expect(planBridge(withPort, s)).toEqual(planBridgeLive(withPort, s));
  });

  it("runs the boot script's MAC step: records the pinned MAC, and sets it again at boot", () => {
    const bin = join(dir, "bin");
    const log = join(dir, "ip.log");
    mkdirSync(bin);
    writeFileSync(join(bin, "ip"), `#!/bin/sh\necho "$*" >> ${log}\n`, { mode: 0o755 });
    const pin = readFileSync(
      join(__dirname, "../../provider/src/resources/bridge/bridge-pin-mac.sh"),
      "utf8",
    ).replace("/sys/class/net/", `${dir}/`);
    writeFileSync(join(dir, "pin.sh"), pin);
    mkdirSync(join(dir, "br9"));
    writeFileSync(join(dir, "br9", "address"), "9a:00:00:00:00:09\n");
    const env = { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` };
    const file = join(dir, "state", "br9.mac");
    expect(spawnSync("sh", [join(dir, "pin.sh"), "br9", file], { env }).status).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("9a:00:00:00:00:09\n");
    writeFileSync(join(dir, "br9", "address"), "02:11:22:33:44:55\n");
    expect(spawnSync("sh", [join(dir, "pin.sh"), "br9", file], { env }).status).toBe(0);
    expect(readFileSync(log, "utf8")).toBe(
      "link set dev br9 address 9a:00:00:00:00:09\nlink set dev br9 address 9a:00:00:00:00:09\n",
    );
  });
});

describe("TapDevice", () => {
  const unit = (n: string) => `pulumi-hypervisor-tap-${n}.service`;
  const unitFile = (n: string) => `/etc/systemd/system/${unit(n)}`;
  const script = (n: string) => `/etc/pulumi-hypervisor/tap/${n}.sh`;
  /** A host with br0 and wl0 (the vm0 capture) and no tap of that name, with systemd. */
  const host = (name: string, o: { bridgeUnit?: boolean; systemd?: boolean } = {}) => ({
    ...parseTapDeviceState(name, tapProbeCapture("vm0")),
    persisted: layer(unit(name), { [unitFile(name)]: undefined, [script(name)]: undefined }, o),
    bridgeUnit: o.bridgeUnit ?? false,
  });
  const unitOf = (steps: Step[], name: string): string => written(steps)[unitFile(name)] ?? "";

  it("orders a tap after its bridge's unit when the bridge is the provider's", () => {
    const d = TapDeviceInputs.parse({ name: "vm5", bridge: "br0" });
    const s = host("vm5", { bridgeUnit: true });
    const live = planTapDeviceLive(d, s);
    const steps = planTapDevice(d, s);
    expect(steps.slice(0, live.length)).toEqual(live);
    expect(steps.slice(live.length).map((x) => x.summary)).toEqual([
      `persist ${unitFile("vm5")}`,
      `persist ${script("vm5")}`,
      `enable ${unit("vm5")} so it runs at boot`,
      "reload systemd's units",
    ]);
    expect(written(steps)[script("vm5")]).toBe(renderBootScript("pulumi-hypervisor tap vm5", live));
    expect(unitOf(steps, "vm5")).toContain(
      [
        "Wants=pulumi-hypervisor-bridge-br0.service",
        "After=pulumi-hypervisor-bridge-br0.service network-pre.target systemd-sysctl.service",
        "Before=network.target",
        "ConditionPathExists=!/sys/class/net/vm5",
      ].join("\n"),
    );
    // a bridge of the host's network manager is up by network.target
    const foreign = planTapDevice(d, host("vm5"));
    expect(unitOf(foreign, "vm5")).toContain(
      "\nAfter=network.target\nConditionPathExists=!/sys/class/net/vm5\n\n[Service]",
    );
  });

  it("persists a routed tap with its host route, proxy ARP and the sysctls it claims", () => {
    const d = TapDeviceInputs.parse({
      name: "vm6",
      routed: { addresses: ["198.18.120.6"], proxyArpInterface: "wl0" },
    });
    const steps = planTapDevice(d, host("vm6"));
    const boot = written(steps)[script("vm6")] ?? "";
    expect(boot).toContain("\nip route replace 198.18.120.6/32 dev vm6 proto static </dev/null;");
    expect(boot).toContain(" tap-set-proxy-arp.sh vm6 1 </dev/null;");
    expect(boot).toContain(
      " sysctl-claim.sh claim net/ipv4/ip_forward tapdevice-vm6 1 </dev/null;",
    );
    expect(boot).toContain(
      " sysctl-claim.sh claim net/ipv4/conf/wl0/proxy_arp tapdevice-vm6 1 </dev/null;",
    );
    expect(unitOf(steps, "vm6")).toContain(
      "After=network-pre.target systemd-sysctl.service\nBefore=network.target\n",
    );
  });

  it("without systemd or with persistence none: only the live steps", () => {
    const d = TapDeviceInputs.parse({ name: "vm5", bridge: "br0" });
    const s = host("vm5", { systemd: false });
    expect(planTapDevice(d, s)).toEqual(planTapDeviceLive(d, s));
    const none = TapDeviceInputs.parse({ ...d, persistence: "none" });
    expect(planTapDevice(none, host("vm5"))).toEqual(planTapDeviceLive(none, host("vm5")));
  });

  it("removes the unit first on delete, then the tap", () => {
    const s: TapDeviceState = {
      ...parseTapDeviceState("vm1", tapProbeCapture("vm1")),
      persisted: layer(
        unit("vm1"),
        { [unitFile("vm1")]: "x", [script("vm1")]: "y" },
        {
          enabled: "enabled",
          active: "active",
        },
      ),
      bridgeUnit: false,
    };
    const steps = planTapDevice(undefined, s);
    expect(steps.slice(0, 3)).toEqual(unpersist(unit("vm1"), [unitFile("vm1"), script("vm1")]));
    expect(steps.at(-1)?.summary).toBe("delete tap vm1");
    expect(
      tapDeviceModule.outputs({ ...s, inputs: TapDeviceInputs.parse({ name: "vm1" }) }),
    ).toMatchObject({ persistedBy: "systemd" });
  });
});

describe("NatRule", () => {
  const unit = "pulumi-hypervisor-nat-guest.service";
  const unitFile = `/etc/systemd/system/${unit}`;
  const script = "/etc/pulumi-hypervisor/nat/guest.sh";
  const d = NatRuleInputs.parse({
    name: "guest",
    sourceCidr: "198.18.141.0/24",
    outInterface: "wan0",
    masquerade: true,
  });
  const state = (o: { iptables?: string; systemd?: boolean } = {}) =>
    parseNatRuleState(
      "guest",
      formatProbe([
        ["tools", "nft yes\niptables yes\n"],
        ["nft", ""],
        ["iptables", o.iptables ?? ""],
        ["sysctl", "net/ipv4/ip_forward 0 0\n"],
        ["sshd-ports", ""],
        ["systemd", o.systemd === false ? "no\n" : "yes\n"],
        [`unit ${unit}`, o.systemd === false ? "" : "enabled not-found\nactive inactive\n"],
        [`file ${unitFile}`, "absent\n"],
        [`file ${script}`, "absent\n"],
      ]),
    );

  it("persists the same nft transaction and the ip_forward claim it applies live", () => {
    const live = planNatRuleLive(d, state());
    const steps = planNatRule(d, state());
    expect(steps).toEqual([
      ...live,
      {
        summary: `persist ${unitFile}`,
        writeFile: {
          path: unitFile,
          content: expect.stringContaining("Before=network.target\n"),
          mode: 0o644,
        },
      },
      {
        summary: `persist ${script}`,
        writeFile: {
          path: script,
          content: renderBootScript("pulumi-hypervisor nat rule guest", live),
          mode: 0o644,
        },
      },
      enable(unit),
      reload,
    ]);
    expect(live.map((s) => s.summary)).toEqual([
      "create nft table ip pulumi_hv_guest with 1 rule",
      "set net.ipv4.ip_forward=1 (claimed by natrule-guest)",
    ]);
    expect(planNatRule(d, state({ systemd: false }))).toEqual(live);
  });

  it("renders the boot script in the backend the live rule uses", () => {
    const s = state({ iptables: fixture("iptables-save.txt") });
    const boot = written(planNatRule(d, s))[script] ?? "";
    expect(natRuleModule.outputs({ ...s, inputs: d })["activeBackend"]).toBe("iptables");
    expect(boot).toContain(" | iptables-restore --noflush; rc=$?");
    expect(boot).not.toContain("nft -f");
  });
});
