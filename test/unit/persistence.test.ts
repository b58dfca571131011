// The persistence core: boot scripts rendered from plan steps run in a real /bin/sh and dash, and
// the persisted layer's plan rewrites only what drifted.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";
import {
  contentHash,
  describePersistDrift,
  parsePersistProbe,
  planPersistence,
  reloadUnitsStep,
  type PersistedForm,
  type PersistedState,
} from "../../provider/src/persist/persistence";
import { renderBootScript, renderUnit, unitName } from "../../provider/src/persist/systemd-unit";
import type { Step } from "../../provider/src/step";

const dir = mkdtempSync(join(tmpdir(), "hv-persist-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("renderBootScript", () => {
  const hostile = `it's "quoted" $(touch ${dir}/pwned) \`x\` \\ %s\n`;
  const steps: Step[] = [
    {
      summary: "write a file",
      writeFile: { path: join(dir, "f.conf"), content: hostile, mode: 0o640 },
    },
    {
      summary: "copy stdin",
      argv: ["sh", "-c", 'cat > "$1"', "sh", join(dir, "in")],
      stdin: hostile,
    },
    { summary: "tolerated exit", argv: ["sh", "-c", "exit 2"], okExitCodes: [0, 2] },
  ];

  for (const shell of ["sh", "dash"]) {
    it(`runs every step in ${shell}, data byte for byte and never executed`, () => {
      const script = renderBootScript("test", steps);
      const r = spawnSync(shell, ["-c", script], { encoding: "utf8" });
      expect(r.status).toBe(0);
      expect(readFileSync(join(dir, "f.conf"), "utf8")).toBe(hostile);
      expect(statSync(join(dir, "f.conf")).mode & 0o777).toBe(0o640);
      expect(readFileSync(join(dir, "in"), "utf8")).toBe(hostile);
      expect(() => statSync(join(dir, "pwned"))).toThrow();
    });
  }

  it("stops at the first failing step and names it", () => {
    const script = renderBootScript("test", [
      { summary: "fails on purpose", argv: ["sh", "-c", "exit 3"] },
      { summary: "never runs", argv: ["touch", join(dir, "after")] },
    ]);
    const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("pulumi-hypervisor: fails on purpose failed (exit 3)\n");
    expect(() => statSync(join(dir, "after"))).toThrow();
  });

  it("parses in dash -n", () => {
    const file = join(dir, "boot.sh");
    writeFileSync(file, renderBootScript("test", steps));
    expect(() => execFileSync("dash", ["-n", file])).not.toThrow();
  });
});

describe("renderUnit", () => {
  it("writes ordered sections", () => {
    expect(
      renderUnit({
        description: "pulumi-hypervisor bridge br0",
        unit: [["After", "network-pre.target"]],
        service: [
          ["Type", "oneshot"],
          ["ExecStart", "/bin/sh /etc/pulumi-hypervisor/bridge/br0.sh"],
        ],
        wantedBy: "multi-user.target",
      }),
    ).toBe(
      [
        "# Written by pulumi-hypervisor; edits are reported as drift and undone by `pulumi up`.",
        "[Unit]",
        "Description=pulumi-hypervisor bridge br0",
        "After=network-pre.target",
        "",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/bin/sh /etc/pulumi-hypervisor/bridge/br0.sh",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
      ].join("\n"),
    );
    expect(unitName("bridge", "br0")).toBe("pulumi-hypervisor-bridge-br0.service");
  });
});

describe("planPersistence", () => {
  const unit = "pulumi-hypervisor-bridge-br0.service";
  const want: PersistedForm = {
    unit,
    files: [
      { path: `/etc/systemd/system/${unit}`, content: "[Unit]\n", mode: 0o644 },
      { path: "/etc/pulumi-hypervisor/bridge/br0.sh", content: "#!/bin/sh\n", mode: 0o600 },
    ],
  };
  const state = (over: Partial<PersistedState> = {}): PersistedState => ({
    systemd: true,
    unit,
    enabled: "enabled",
    active: "active",
    files: Object.fromEntries(want.files.map((f) => [f.path, contentHash(f.content)])),
    ...over,
  });

  it("is empty when everything matches, and without systemd", () => {
    expect(planPersistence(want, state())).toEqual([]);
    expect(planPersistence(want, state({ systemd: false, enabled: "", files: {} }))).toEqual([]);
  });

  it("rewrites only a drifted file; reloads systemd only for the unit file", () => {
    const edited = state({
      files: { ...state().files, "/etc/pulumi-hypervisor/bridge/br0.sh": "00" },
    });
    expect(planPersistence(want, edited)).toEqual([
      { summary: "persist /etc/pulumi-hypervisor/bridge/br0.sh", writeFile: want.files[1] },
    ]);
    expect(describePersistDrift(want, edited)).toBe(
      "/etc/pulumi-hypervisor/bridge/br0.sh differs from what the provider writes (edited by hand, or written by another version)",
    );
  });

  it("writes, enables and reloads on a fresh host; starts only when asked", () => {
    const fresh = state({ enabled: "not-found", active: "inactive", files: {} });
    expect(planPersistence({ ...want, start: true }, fresh).map((s) => s.summary)).toEqual([
      `persist /etc/systemd/system/${unit}`,
      "persist /etc/pulumi-hypervisor/bridge/br0.sh",
      `enable ${unit} so it runs at boot`,
      "reload systemd's units",
      `start ${unit}`,
    ]);
  });

  // A step reloads systemd's units when it is the reload step, a daemon-reload, or an enable or
  // disable without --no-reload (systemctl reloads after changing the links).
  const reloads = (steps: readonly Step[]): number =>
    steps.filter(
      (s) =>
        ("script" in s && s.script.name === "persist/systemd-reload.sh") ||
        ("argv" in s &&
          s.argv[0] === "systemctl" &&
          (s.argv[1] === "daemon-reload" ||
            ((s.argv[1] === "enable" || s.argv[1] === "disable") &&
              !s.argv.includes("--no-reload")))),
    ).length;
  const links = (steps: readonly Step[]): number =>
    steps.findIndex((x) => "argv" in x && (x.argv[1] === "enable" || x.argv[1] === "disable"));

  it("reloads systemd once where the unit file or its links change, before a start, never twice", () => {
    const unitFile = `/etc/systemd/system/${unit}`;
    for (const enabled of ["enabled", "disabled", "not-found", ""]) {
      for (const unitHash of [undefined, "00", contentHash("[Unit]\n")]) {
        for (const enable of [true, false]) {
          for (const start of [true, false]) {
            const s = state({ enabled, active: "inactive", files: { [unitFile]: unitHash } });
            const steps = planPersistence({ ...want, enable, start }, s);
            const what = JSON.stringify({ enabled, unitHash, enable, start });
            const changed = unitHash !== contentHash("[Unit]\n") || links(steps) >= 0;
            // a changed unit file or new links are read by exactly one reload, and nothing
            // else reloads
            expect(reloads(steps), what).toBe(changed ? 1 : 0);
            const written = steps.findIndex(
              (x) => "writeFile" in x && x.writeFile.path === unitFile,
            );
            const reload = steps.findIndex((x) => reloads([x]) === 1);
            const started = steps.findIndex((x) => "argv" in x && x.argv[1] === "start");
            if (changed) expect(reload, what).toBeGreaterThan(Math.max(written, links(steps)));
            if (changed && started >= 0) expect(started, what).toBeGreaterThan(reload);
          }
        }
      }
    }
  });

  it("a rewritten unit gets one reload, after the disable where there is one", () => {
    const rewritten = state({ files: { ...state().files, [`/etc/systemd/system/${unit}`]: "00" } });
    expect(planPersistence(want, rewritten)).toEqual([
      { summary: `persist /etc/systemd/system/${unit}`, writeFile: want.files[0] },
      reloadUnitsStep,
    ]);
    expect(planPersistence({ ...want, enable: false }, rewritten)).toEqual([
      { summary: `persist /etc/systemd/system/${unit}`, writeFile: want.files[0] },
      {
        summary: `disable ${unit} so it does not run at boot`,
        argv: ["systemctl", "disable", "--no-reload", "--quiet", "--", unit],
      },
      reloadUnitsStep,
    ]);
  });

  it("removes what is present on delete, with one reload once the files are gone", () => {
    const partial = state({ files: { [`/etc/systemd/system/${unit}`]: "ab", "/x": undefined } });
    expect(planPersistence(undefined, partial)).toEqual([
      {
        summary: `disable and stop ${unit}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", unit],
      },
      {
        summary: `remove /etc/systemd/system/${unit}`,
        argv: ["rm", "-f", "--", `/etc/systemd/system/${unit}`],
      },
      reloadUnitsStep,
    ]);
    expect(planPersistence(undefined, state({ enabled: "not-found", files: {} }))).toEqual([]);
    // no file left to remove (a link without its unit file): the reload reads the links' change
    expect(planPersistence(undefined, state({ files: {} }))).toEqual([
      {
        summary: `disable and stop ${unit}`,
        argv: ["systemctl", "disable", "--now", "--no-reload", "--quiet", "--", unit],
      },
      reloadUnitsStep,
    ]);
  });

  it("parses what persist-probe.sh prints", () => {
    const out = formatProbe([
      ["systemd", "yes\n"],
      [`unit ${unit}`, "enabled enabled\nactive inactive\n"],
      ["file /a", "abc\n"],
      ["file /b", "absent\n"],
    ]);
    expect(parsePersistProbe(parseProbe(out, "test"))).toEqual({
      systemd: true,
      unit,
      enabled: "enabled",
      active: "inactive",
      files: { "/a": "abc", "/b": undefined },
    });
  });
});
