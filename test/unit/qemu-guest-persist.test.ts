// QemuGuest under systemd: its own service unit started by systemd, restarted on failure, enabled
// at boot with autostart, ordered after its taps, bridges and their dnsmasq; stopped through the
// unit (ACPI power-down with the guest's grace); runtime only with persistence "none".
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  contentHash,
  reloadUnitsStep,
  type PersistedState,
  NOT_OURS,
} from "../../provider/src/persist/persistence";
import { renderBootScript } from "../../provider/src/persist/systemd-unit";
import { qemuGuestModule } from "../../provider/src/resources/qemu-guest";
import {
  buildQemuArgv,
  guestPaths,
  renderGuestConfig,
  type GuestStart,
} from "../../provider/src/resources/qemu-guest/argv";
import { parseQemuGuestState } from "../../provider/src/resources/qemu-guest/observe";
import { planQemuGuest, stopStep } from "../../provider/src/resources/qemu-guest/plan";
import {
  QemuGuestInputs,
  type QemuGuestState,
} from "../../provider/src/resources/qemu-guest/schema";
import {
  guestDependencies,
  renderGuestUnit,
  renderStartScript,
} from "../../provider/src/resources/qemu-guest/unit";

import { RAW_B_INPUTS } from "../fixtures/qemu-capture-inputs";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");
const UNIT = "pulumi-hypervisor-qemu-g1.service";
const UNIT_FILE = `/etc/systemd/system/${UNIT}`;
const P = guestPaths("g1");
const RELOAD = reloadUnitsStep;
const ENABLE = {
  summary: `enable ${UNIT} so it runs at boot`,
  argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", UNIT],
};
// The captured raw image is 1 GiB: it grows wherever the guest is stopped.
const GROW = {
  summary: "grow disk image /var/lib/hv-fixture/g1-raw.img to 2G",
  argv: ["qemu-img", "resize", "-q", "-f", "raw", "/var/lib/hv-fixture/g1-raw.img", "2G"],
};
const START = { summary: `start ${UNIT}`, argv: ["systemctl", "start", "--", UNIT] };

// The captured guest B (test/fixtures/README.md): taps qtap0 on bridge qbr0, a bridge NIC on qbr0.
const g = (over: Record<string, unknown> = {}): QemuGuestInputs =>
  QemuGuestInputs.parse({ ...RAW_B_INPUTS, ...over });

// accel "auto": the start script chooses KVM or TCG on the host, whatever the provider observed.
const autoStart = (d: QemuGuestInputs): GuestStart => {
  const bridgeHelper = "/usr/lib/qemu/qemu-bridge-helper";
  return {
    kvm: buildQemuArgv(d, { accel: "kvm", bridgeHelper }),
    tcg: buildQemuArgv(d, { accel: "tcg", bridgeHelper }),
  };
};

function files(d: QemuGuestInputs, s: QemuGuestState): Record<string, string> {
  return {
    [UNIT_FILE]: renderGuestUnit(d, guestDependencies(d, s)),
    [P.startScript]: renderStartScript(d, autoStart(d)),
    [P.stopScript]: renderBootScript("stop guest g1", [stopStep(d, "stop guest g1")]),
  };
}

/** A captured probe as a systemd host adds to it: a dnsmasq "lan" on qbr0, the unit as given. */
function onSystemd(
  situation: "running" | "dead",
  unit: (s: QemuGuestState) => Partial<PersistedState>,
  supervised = true,
): QemuGuestState {
  const base = parseQemuGuestState(g(), fixture(`qemu-probe-${situation}.txt`));
  const s: QemuGuestState = { ...base, dnsmasqByInterface: { qbr0: ["lan"] } };
  const persist: PersistedState = {
    systemd: true,
    unit: UNIT,
    enabled: "enabled",
    active: situation === "running" ? "active" : "inactive",
    files: Object.fromEntries(Object.entries(files(g(), s)).map(([k, v]) => [k, contentHash(v)])),
    ...unit(s),
  };
  return { ...s, persist, mainPid: supervised ? s.process?.pid : undefined };
}
const asIs = (): Partial<PersistedState> => ({});

const write = (path: string, d = g(), s = onSystemd("running", asIs)) => ({
  summary: `persist ${path}`,
  writeFile: { path, content: files(d, s)[path] ?? "", mode: path === UNIT_FILE ? 0o644 : 0o700 },
});

describe("QemuGuest under systemd", () => {
  it("renders a forking unit ordered after its taps, bridges and their dnsmasq", () => {
    const s = onSystemd("running", asIs);
    expect(guestDependencies(g(), s)).toEqual([
      "pulumi-hypervisor-tap-qtap0.service",
      "pulumi-hypervisor-bridge-qbr0.service",
      "pulumi-hypervisor-dnsmasq-lan.service",
    ]);
    const after =
      "pulumi-hypervisor-tap-qtap0.service pulumi-hypervisor-bridge-qbr0.service pulumi-hypervisor-dnsmasq-lan.service";
    expect(renderGuestUnit(g({ shutdownTimeoutSeconds: 30 }), guestDependencies(g(), s))).toBe(
      [
        "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.",
        "[Unit]",
        "Description=pulumi-hypervisor QEMU guest g1",
        `Wants=${after}`,
        `After=${after}`,
        "",
        "[Service]",
        "Type=forking",
        "PIDFile=/run/pulumi-hypervisor/qemu/g1/qemu.pid",
        "ExecStart=/bin/sh /etc/pulumi-hypervisor/qemu/g1/start.sh",
        "ExecStop=/bin/sh /etc/pulumi-hypervisor/qemu/g1/stop.sh",
        "TimeoutStopSec=70",
        "Restart=on-failure",
        "RestartSec=1",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
      ].join("\n"),
    );
  });

  for (const shell of ["sh", "dash"]) {
    it(`refuses to start on a missing tap at boot, with a clear message (${shell})`, () => {
      const d = g({ nics: [{ mac: "52:54:00:52:00:10", tap: "hvnotap9" }] });
      const r = spawnSync(shell, ["-c", renderStartScript(d, { argv: ["false"] })], {
        encoding: "utf8",
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        "guest g1: tap hvnotap9 does not exist; not starting the guest on a fresh unbridged tap (is the unit of its TapDevice, pulumi-hypervisor-tap-hvnotap9.service, enabled?)\n" +
          "pulumi-hypervisor: check the taps of guest g1 (hvnotap9) failed (exit 1)\n",
      );
    });
  }

  it("is empty when its unit runs the matching guest, and reports the backend", () => {
    const s = onSystemd("running", asIs);
    expect(planQemuGuest(g(), s)).toEqual([]);
    expect(qemuGuestModule.outputs(s)).toMatchObject({
      persistedBy: "systemd",
      persistedDrift: undefined,
    });
  });

  it("starts a stopped guest through its unit, not by running QEMU itself", () => {
    const s = onSystemd("dead", () => ({ enabled: "", files: {} }));
    expect(planQemuGuest(g(), s)).toEqual([
      GROW,
      write(UNIT_FILE, g(), s),
      write(P.startScript, g(), s),
      write(P.stopScript, g(), s),
      ENABLE,
      RELOAD,
      START,
    ]);
  });

  it("stops through the unit and disables it with running: false; autostart false is not enabled", () => {
    expect(planQemuGuest(g({ running: false }), onSystemd("running", asIs))).toEqual([
      {
        summary:
          "stop guest g1 through pulumi-hypervisor-qemu-g1.service: ACPI powerdown, quit after 60s, then kill",
        argv: ["systemctl", "stop", "--", UNIT],
      },
      GROW,
      {
        summary: `disable ${UNIT} so it does not run at boot`,
        argv: ["systemctl", "disable", "--no-reload", "--quiet", "--", UNIT],
      },
      RELOAD,
    ]);
    expect(planQemuGuest(g({ autostart: false }), onSystemd("running", asIs))).toEqual([
      {
        summary: `disable ${UNIT} so it does not run at boot`,
        argv: ["systemctl", "disable", "--no-reload", "--quiet", "--", UNIT],
      },
      RELOAD,
    ]);
  });

  it("applies a new shutdown grace live: unit and stop script rewritten, no restart", () => {
    const d = g({ shutdownTimeoutSeconds: 5 });
    const s = onSystemd("running", asIs);
    expect(planQemuGuest(d, s)).toEqual([
      {
        summary: `write ${P.configFile}`,
        writeFile: { path: P.configFile, content: renderGuestConfig(d), mode: 0o600 },
      },
      write(UNIT_FILE, d, s),
      write(P.stopScript, d, s),
      RELOAD,
    ]);
  });

  it("restarts a guest its unit does not run, under the unit", () => {
    const s = onSystemd("running", asIs, false);
    expect(planQemuGuest(g(), s)).toEqual([
      stopStep(g(), "stop guest g1 to restart it (to run it under its systemd unit " + UNIT + ")"),
      GROW,
      START,
    ]);
  });

  it("reports a script edited by hand as drift", () => {
    const s = onSystemd("running", (x) => ({
      files: { ...onSystemd("running", asIs).persist.files, [P.startScript]: "00" },
      enabled: x.name === "g1" ? "disabled" : "",
    }));
    expect(qemuGuestModule.outputs(s).persistedDrift).toBe(
      `${P.startScript} ${NOT_OURS}; ${UNIT} is disabled`,
    );
    expect(planQemuGuest(g(), s)).toEqual([write(P.startScript), ENABLE, RELOAD]);
    // refresh shows it as drift of `persistence`, so the next up repairs it
    expect(qemuGuestModule.observedInputs(s, g())).toEqual({ running: true, persistence: "none" });
  });

  it("deletes: disables and stops the unit (graceful), removes the unit, scripts and files", () => {
    expect(planQemuGuest(undefined, onSystemd("running", asIs))).toEqual([
      {
        summary: `disable and stop ${UNIT}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", UNIT],
      },
      {
        summary: `remove ${UNIT_FILE}, ${P.startScript}, ${P.stopScript}`,
        argv: ["rm", "-f", "--", UNIT_FILE, P.startScript, P.stopScript],
      },
      RELOAD,
      { summary: `remove ${P.runDir}`, argv: ["rm", "-rf", "--", P.runDir] },
      { summary: `remove ${P.configDir}`, argv: ["rm", "-rf", "--", P.configDir] },
      { summary: `remove the serial log ${P.serialLog}`, argv: ["rm", "-f", "--", P.serialLog] },
    ]);
  });

  it('with persistence "none", removes the unit (which stops the guest) and starts QEMU itself', () => {
    const d = g({ persistence: "none" });
    const steps = planQemuGuest(d, onSystemd("running", asIs));
    expect(steps.map((s) => s.summary)).toEqual([
      `disable and stop ${UNIT}`,
      `remove ${UNIT_FILE}, ${P.startScript}, ${P.stopScript}`,
      "reload systemd's units",
      GROW.summary,
      "create /run/pulumi-hypervisor/qemu/g1 and /var/log/pulumi-hypervisor/qemu",
      "start guest g1 (KVM if it works, else TCG; 128 MiB, 1 cpu)",
    ]);
  });
  it("refuses an explicit autostart: true where the guest cannot persist, before any step", () => {
    const noSystemd = (s: QemuGuestState): QemuGuestState => ({
      ...s,
      persist: { ...s.persist, systemd: false, enabled: "", active: "" },
    });
    expect(() => planQemuGuest(g({ autostart: true }), noSystemd(onSystemd("dead", asIs)))).toThrow(
      "autostart: true cannot be honoured: PID 1 on this host is not systemd, so the guest has no unit to start at boot; leave autostart unset or set it to false",
    );
    expect(() =>
      planQemuGuest(g({ autostart: true, persistence: "none" }), onSystemd("running", asIs)),
    ).toThrow(
      'autostart: true cannot be honoured: persistence is "none", so the guest has no unit to start at boot; leave autostart unset or set it to false',
    );
    // unset and false keep working there: runtime only, as before
    const unset = planQemuGuest(g(), noSystemd(onSystemd("dead", asIs)));
    expect(planQemuGuest(g({ autostart: false }), noSystemd(onSystemd("dead", asIs)))).toEqual(
      unset,
    );
    expect(unset.map((x) => x.summary)).toContain(
      "start guest g1 (KVM if it works, else TCG; 128 MiB, 1 cpu)",
    );
    // where it persists, explicit true is the same as unset
    expect(planQemuGuest(g({ autostart: true }), onSystemd("running", asIs))).toEqual([]);
  });
});
