// DnsmasqInstance under systemd: its own service unit, started by systemd, restarted on failure;
// static leases still applied live; runtime only with persistence "none" or without systemd.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  contentHash,
  reloadUnitsStep,
  type PersistedState,
  NOT_OURS,
} from "../../provider/src/persist/persistence";
import { dnsmasqInstanceModule } from "../../provider/src/resources/dnsmasq-instance";
import { parseDnsmasqState } from "../../provider/src/resources/dnsmasq-instance/observe";
import {
  planDnsmasqInstance,
  reloadStep,
  startStep,
} from "../../provider/src/resources/dnsmasq-instance/plan";
import { renderDhcpHosts } from "../../provider/src/resources/dnsmasq-instance/render";
import {
  dnsmasqPaths,
  type DnsmasqState,
} from "../../provider/src/resources/dnsmasq-instance/schema";
import { renderDnsmasqUnit } from "../../provider/src/resources/dnsmasq-instance/unit";

import { ALPHA, BETA, GAMMA, guests } from "../fixtures/dnsmasq-capture-inputs";

const fixture = (f: string): string => readFileSync(join(__dirname, "..", "fixtures", f), "utf8");
const UNIT = "pulumi-hypervisor-dnsmasq-guests.service";
const UNIT_FILE = `/etc/systemd/system/${UNIT}`;
const paths = dnsmasqPaths("guests");

const installed: PersistedState = {
  systemd: true,
  unit: UNIT,
  enabled: "enabled",
  active: "active",
  files: { [UNIT_FILE]: contentHash(renderDnsmasqUnit("guests", "br0")) },
};
const fresh: PersistedState = {
  systemd: true,
  unit: UNIT,
  enabled: "",
  active: "inactive",
  files: { [UNIT_FILE]: undefined },
};

/** The captured probe of `situation` as a systemd host would add to it. */
function onSystemd(
  situation: "running" | "absent",
  persist: PersistedState,
  mainPid: number | undefined,
): DnsmasqState {
  const name = situation === "absent" ? "nope" : "guests";
  const base = parseDnsmasqState(name, fixture(`dnsmasq-probe-${situation}.txt`), guests());
  // The absent capture is of another name beside a running "guests": seen as "guests", it is alone.
  return { ...base, name: "guests", paths, persist, mainPid, otherInstances: {} };
}

const unitFile = {
  summary: `persist ${UNIT_FILE}`,
  writeFile: { path: UNIT_FILE, content: renderDnsmasqUnit("guests", "br0"), mode: 0o644 },
};

describe("DnsmasqInstance under systemd", () => {
  it("renders a forking service unit with the provider's command line, restarted on failure", () => {
    expect(renderDnsmasqUnit("guests", "br0")).toBe(
      [
        "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.",
        "[Unit]",
        "Description=pulumi-hypervisor dnsmasq guests on br0",
        "Wants=pulumi-hypervisor-bridge-br0.service pulumi-hypervisor-tap-br0.service",
        "After=pulumi-hypervisor-bridge-br0.service pulumi-hypervisor-tap-br0.service",
        "",
        "[Service]",
        "Type=forking",
        "PIDFile=/run/pulumi-hypervisor/dnsmasq/guests/dnsmasq.pid",
        "ExecStartPre=mkdir -p -- /run/pulumi-hypervisor/dnsmasq/guests",
        "ExecStart=dnsmasq --conf-file=/etc/pulumi-hypervisor/dnsmasq/guests/dnsmasq.conf",
        "ExecReload=kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=1",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
      ].join("\n"),
    );
  });

  it("creates: installs the config, writes and enables the unit, and lets systemd start it", () => {
    const steps = planDnsmasqInstance(guests(), onSystemd("absent", fresh, undefined));
    expect(steps).toEqual([
      startStep(guests(), paths, undefined, { stop: undefined }),
      unitFile,
      {
        summary: `enable ${UNIT} so it runs at boot`,
        argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", UNIT],
      },
      reloadUnitsStep,
      { summary: `start ${UNIT}`, argv: ["systemctl", "start", "--", UNIT] },
    ]);
    const [install] = steps;
    expect(
      install !== undefined && "script" in install ? install.script.args.slice(7) : [],
    ).toEqual(["", expect.any(String), "install", ""]);
  });

  it("is empty when systemd runs the matching daemon, and reports the backend", () => {
    const state = onSystemd("running", installed, 4704);
    expect(planDnsmasqInstance(guests(), state)).toEqual([]);
    expect(dnsmasqInstanceModule.outputs(state)).toMatchObject({
      persistedBy: "systemd",
      persistedDrift: undefined,
    });
  });

  it("applies a new static lease live (SIGHUP to the same pid), no restart", () => {
    const d = guests({ staticLeases: [ALPHA, BETA, GAMMA] });
    expect(planDnsmasqInstance(d, onSystemd("running", installed, 4704))).toEqual([
      reloadStep("guests", 4704, paths, renderDhcpHosts([ALPHA, BETA, GAMMA])),
    ]);
  });

  it("restarts through the unit when the config changes", () => {
    const d = guests({ dns: false });
    expect(planDnsmasqInstance(d, onSystemd("running", installed, 4704))).toEqual([
      startStep(d, paths, 4704, { stop: UNIT }),
      { summary: `start ${UNIT}`, argv: ["systemctl", "start", "--", UNIT] },
    ]);
  });

  it("moves a daemon it does not supervise under its unit", () => {
    expect(planDnsmasqInstance(guests(), onSystemd("running", fresh, undefined))).toEqual([
      startStep(guests(), paths, 4704, { stop: undefined }),
      unitFile,
      {
        summary: `enable ${UNIT} so it runs at boot`,
        argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", UNIT],
      },
      reloadUnitsStep,
      { summary: `start ${UNIT}`, argv: ["systemctl", "start", "--", UNIT] },
    ]);
  });

  it("reports a unit file edited by hand and a disabled unit, and rewrites without a restart", () => {
    const state = onSystemd(
      "running",
      { ...installed, enabled: "disabled", files: { [UNIT_FILE]: "00" } },
      4704,
    );
    expect(dnsmasqInstanceModule.outputs(state).persistedDrift).toBe(
      `${UNIT_FILE} ${NOT_OURS}; ${UNIT} is disabled`,
    );
    // refresh shows it as drift of `persistence`, so the next up repairs it
    expect(dnsmasqInstanceModule.observedInputs(state, guests()).persistence).toBe("none");
    expect(planDnsmasqInstance(guests(), state)).toEqual([
      unitFile,
      {
        summary: `enable ${UNIT} so it runs at boot`,
        argv: ["systemctl", "enable", "--no-reload", "--quiet", "--", UNIT],
      },
      reloadUnitsStep,
    ]);
  });

  it("deletes: disables and stops the unit, removes it and every file", () => {
    expect(planDnsmasqInstance(undefined, onSystemd("running", installed, 4704))).toEqual([
      {
        summary: `disable and stop ${UNIT}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", UNIT],
      },
      { summary: `remove ${UNIT_FILE}`, argv: ["rm", "-f", "--", UNIT_FILE] },
      reloadUnitsStep,
      {
        summary: `remove the files of dnsmasq guests (${paths.configDir}, ${paths.runDir}, ${paths.dataDir})`,
        argv: ["rm", "-rf", "--", paths.configDir, paths.runDir, paths.dataDir],
      },
    ]);
  });

  it('with persistence "none", removes the unit and runs dnsmasq itself', () => {
    const d = guests({ persistence: "none" });
    const state = onSystemd("running", installed, 4704);
    expect(planDnsmasqInstance(d, state)).toEqual([
      {
        summary: `disable and stop ${UNIT}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", UNIT],
      },
      { summary: `remove ${UNIT_FILE}`, argv: ["rm", "-f", "--", UNIT_FILE] },
      reloadUnitsStep,
      startStep(d, paths, undefined),
    ]);
    expect(
      dnsmasqInstanceModule.outputs({
        ...state,
        wanted: { interface: "br0", persistence: "none" },
      }),
    ).toMatchObject({
      persistedBy: "none",
      persistedDrift: undefined,
    });
  });

  it("without systemd, plans exactly as before: no unit", () => {
    const state = parseDnsmasqState("nope", fixture("dnsmasq-probe-absent.txt"), guests());
    const alone = { ...state, name: "guests", paths, otherInstances: {} };
    expect(planDnsmasqInstance(guests(), alone)).toEqual([startStep(guests(), paths, undefined)]);
  });
});
