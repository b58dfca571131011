// Other network managers keep their hands off the provider's devices: where NetworkManager runs,
// a tap or a bridge without host NICs is unmanaged (a conf.d drop-in); where systemd-networkd
// runs, a tap has a .network file sorting first that leaves it alone (no DHCP on it). Neither
// manager running: nothing of the kind is written, and no manager is ever enabled.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";
import { parseKeepOffProbe, type RunningManagers } from "../../provider/src/persist/keep-off";
import {
  contentHash,
  reloadUnitsStep,
  type PersistedState,
  NOT_OURS,
} from "../../provider/src/persist/persistence";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { observeCall as bridgeObserveCall } from "../../provider/src/resources/bridge/observe";
import { NO_MANAGERS } from "../../provider/src/resources/bridge/manager";
import { absentBridge, planBridge } from "../../provider/src/resources/bridge/plan";
import { BridgeInputs, type BridgeState } from "../../provider/src/resources/bridge/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { planTapDevice, planTapDeviceLive } from "../../provider/src/resources/tap-device/plan";
import {
  TapDeviceInputs,
  type TapDeviceState,
} from "../../provider/src/resources/tap-device/schema";
import type { Step } from "../../provider/src/step";
import { tapProbeCapture } from "../support/tap-fixtures";

const HEADER =
  "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.";
const NM = { networkManager: true, networkd: false };
const ND = { networkManager: false, networkd: true };
const NEITHER = { networkManager: false, networkd: false };

const tapUnit = "pulumi-hypervisor-tap-vm5.service";
const tapUnitFile = `/etc/systemd/system/${tapUnit}`;
const tapScript = "/etc/pulumi-hypervisor/tap/vm5.sh";
const nmFile = "/etc/NetworkManager/conf.d/pulumi-hypervisor-tap-vm5.conf";
const ndFile = "/etc/systemd/network/04-pulumi-hypervisor-tap-vm5.network";
const nmContent = `${HEADER}\n[keyfile]\nunmanaged-devices+=interface-name:vm5\n`;
const ndContent = `${HEADER}\n[Match]\nName=vm5\n\n[Link]\nUnmanaged=yes\n`;
const nmReload = (name: string) => ({
  summary: `make NetworkManager reread its configuration (${name} unmanaged)`,
  argv: ["nmcli", "general", "reload", "conf"],
});
const ndReload = {
  summary: "make systemd-networkd reread its configuration (vm5 left alone)",
  argv: ["networkctl", "reload"],
};
const persist = (path: string, content: string) => ({
  summary: `persist ${path}`,
  writeFile: { path, content, mode: 0o644 },
});

function layer(unit: string, files: Record<string, string | undefined>): PersistedState {
  return {
    systemd: true,
    unit,
    enabled: "not-found",
    active: "inactive",
    files: Object.fromEntries(
      Object.entries(files).map(([p, c]) => [p, c === undefined ? undefined : contentHash(c)]),
    ),
  };
}

/** A host with br0 and wl0 (the vm0 capture), no tap vm5 yet, systemd, the managers given. */
function tapHost(keepOff: RunningManagers, persistence?: PersistedState): TapDeviceState {
  return {
    ...parseTapDeviceState("vm5", tapProbeCapture("vm0")),
    persisted: persistence ?? layer(tapUnit, { [tapUnitFile]: undefined, [tapScript]: undefined }),
    keepOff,
  };
}

/** The steps after the live ones, with the unit and boot script writes checked elsewhere. */
function tail(steps: Step[], live: Step[]): Step[] {
  expect(steps.slice(0, live.length)).toEqual(live);
  return steps
    .slice(live.length)
    .filter((s) => !("writeFile" in s) || ![tapUnitFile, tapScript].includes(s.writeFile.path));
}

const reload = reloadUnitsStep;
const enable = {
  summary: `enable ${tapUnit} so it runs at boot`,
  argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", tapUnit],
};

describe("keepoff_probe", () => {
  it("parses which managers run; a probe without the sections means neither", () => {
    const out = formatProbe([
      ["keepoff-nm", "yes\n"],
      ["keepoff-networkd", "no\n"],
    ]);
    expect(parseKeepOffProbe(parseProbe(out, "t"))).toEqual(NM);
    expect(parseTapDeviceState("vm0", tapProbeCapture("vm0")).keepOff).toEqual(NEITHER);
  });

  it("says yes only for a NetworkManager that answers (a real sh, a stand-in nmcli)", () => {
    const bin = mkdtempSync(join(tmpdir(), "hv-keepoff-"));
    try {
      const src = join(__dirname, "..", "..", "provider", "src");
      const run = (nmcliExit: number): RunningManagers => {
        writeFileSync(join(bin, "nmcli"), `#!/bin/sh\nexit ${nmcliExit}\n`);
        chmodSync(join(bin, "nmcli"), 0o755);
        const r = spawnSync(
          "sh",
          ["-c", '. "$1/host/probe.sh"; . "$1/persist/keepoff-probe.sh"; keepoff_probe', "sh", src],
          { encoding: "utf8", env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` } },
        );
        expect(r.status).toBe(0);
        return parseKeepOffProbe(parseProbe(r.stdout, "keepoff_probe"));
      };
      // nmcli exits 8 when NetworkManager is not running
      expect(run(8).networkManager).toBe(false);
      expect(run(0).networkManager).toBe(true);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it("probes the bridge's NetworkManager drop-in with its persisted files", () => {
    expect(bridgeObserveCall("br9", undefined, []).args.slice(-2)).toEqual([
      "/etc/pulumi-hypervisor/bridge/br9.mac",
      "/etc/NetworkManager/conf.d/pulumi-hypervisor-bridge-br9.conf",
    ]);
  });
});

describe("TapDevice keeps the host's network managers off", () => {
  const d = TapDeviceInputs.parse({ name: "vm5", bridge: "br0" });

  it("NetworkManager running: an unmanaged-devices drop-in, then NetworkManager rereads it", () => {
    const s = tapHost(NM);
    expect(tail(planTapDevice(d, s), planTapDeviceLive(d, s))).toEqual([
      persist(nmFile, nmContent),
      enable,
      reload,
      nmReload("vm5"),
    ]);
  });

  it("networkd running: a .network file sorting first that leaves the tap unmanaged", () => {
    const s = tapHost(ND);
    expect(tail(planTapDevice(d, s), planTapDeviceLive(d, s))).toEqual([
      persist(ndFile, ndContent),
      enable,
      reload,
      ndReload,
    ]);
  });

  it("neither running: no keep-off file and no manager touched", () => {
    const s = tapHost(NEITHER);
    const steps = planTapDevice(d, s);
    expect(tail(steps, planTapDeviceLive(d, s))).toEqual([enable, reload]);
    expect(JSON.stringify(steps)).not.toMatch(/nmcli|networkctl|NetworkManager|systemd\/network/);
  });

  it("is empty when the files match; a drop-in edited by hand is drift, rewritten by up", () => {
    const created = tapHost(NM);
    const files = Object.fromEntries(
      planTapDevice(d, created).flatMap((s) =>
        "writeFile" in s ? [[s.writeFile.path, s.writeFile.content]] : [],
      ),
    );
    const after: TapDeviceState = {
      ...created,
      persisted: { ...layer(tapUnit, files), enabled: "enabled" },
    };
    // only the persisted layer matters here: the live steps are the same either way
    expect(tail(planTapDevice(d, after), planTapDeviceLive(d, after))).toEqual([]);
    const edited: TapDeviceState = {
      ...after,
      persisted: { ...after.persisted, files: { ...after.persisted.files, [nmFile]: "00" } },
    };
    expect(tail(planTapDevice(d, edited), planTapDeviceLive(d, edited))).toEqual([
      persist(nmFile, nmContent),
      nmReload("vm5"),
    ]);
    expect(tapDeviceModule.outputs({ ...edited, inputs: d })).toMatchObject({
      persistedDrift: `${nmFile} ${NOT_OURS}`,
    });
  });

  it("delete removes the keep-off files with the unit; persistence none writes none", () => {
    const all = { [tapUnitFile]: "u", [tapScript]: "s", [nmFile]: nmContent, [ndFile]: ndContent };
    const s = tapHost(NM, { ...layer(tapUnit, all), enabled: "enabled" });
    expect(planTapDevice(undefined, s).slice(0, 3)).toEqual([
      {
        summary: `disable and stop ${tapUnit}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", tapUnit],
      },
      {
        summary: `remove ${tapUnitFile}, ${tapScript}, ${nmFile}, ${ndFile}`,
        argv: ["rm", "-f", "--", tapUnitFile, tapScript, nmFile, ndFile],
      },
      reload,
    ]);
    const none = TapDeviceInputs.parse({ name: "vm5", bridge: "br0", persistence: "none" });
    const fresh = tapHost({ networkManager: true, networkd: true });
    expect(planTapDevice(none, fresh)).toEqual(planTapDeviceLive(none, fresh));
  });
});

describe("Bridge without host NICs keeps NetworkManager off", () => {
  const unit = "pulumi-hypervisor-bridge-br9.service";
  const brNm = "/etc/NetworkManager/conf.d/pulumi-hypervisor-bridge-br9.conf";
  const absent = (keepOff: RunningManagers): BridgeState =>
    absentBridge("br9", layer(unit, {}), NO_MANAGERS, keepOff);
  const d = BridgeInputs.parse({ name: "br9", addresses: ["198.18.90.1/24"] });
  const keepOffSteps = (steps: Step[]): Step[] =>
    steps.filter((s) =>
      JSON.stringify(s).match(/NetworkManager|nmcli|networkctl|systemd\/network/),
    );

  it("NetworkManager running: the drop-in after the unit's files, then a reload", () => {
    const steps = planBridge(d, absent(NM));
    expect(keepOffSteps(steps)).toEqual([
      persist(brNm, `${HEADER}\n[keyfile]\nunmanaged-devices+=interface-name:br9\n`),
      nmReload("br9"),
    ]);
    expect(steps.at(-1)).toEqual(nmReload("br9"));
  });

  it("networkd or neither running: nothing (networkd only configures links it is given)", () => {
    expect(keepOffSteps(planBridge(d, absent(ND)))).toEqual([]);
    expect(keepOffSteps(planBridge(d, absent(NEITHER)))).toEqual([]);
    expect(bridgeModule.outputs({ ...absent(NEITHER), inputs: d })).toMatchObject({
      persistedBy: "systemd",
    });
  });
});
