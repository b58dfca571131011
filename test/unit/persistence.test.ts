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
      "/etc/pulumi-hypervisor/bridge/br0.sh was edited by hand",
    );
  });

  it("writes, reloads and enables on a fresh host; starts only when asked", () => {
    const fresh = state({ enabled: "not-found", active: "inactive", files: {} });
    expect(planPersistence({ ...want, start: true }, fresh).map((s) => s.summary)).toEqual([
      `persist /etc/systemd/system/${unit}`,
      "persist /etc/pulumi-hypervisor/bridge/br0.sh",
      "reload systemd's units",
      `enable ${unit} so it runs at boot`,
      `start ${unit}`,
    ]);
  });

  it("removes what is present on delete", () => {
    const partial = state({ files: { [`/etc/systemd/system/${unit}`]: "ab", "/x": undefined } });
    expect(planPersistence(undefined, partial)).toEqual([
      {
        summary: `disable and stop ${unit}`,
        argv: ["systemctl", "disable", "--now", "--quiet", "--", unit],
      },
      {
        summary: `remove /etc/systemd/system/${unit}`,
        argv: ["rm", "-f", "--", `/etc/systemd/system/${unit}`],
      },
      { summary: "reload systemd's units", argv: ["systemctl", "daemon-reload"] },
    ]);
    expect(planPersistence(undefined, state({ enabled: "not-found", files: {} }))).toEqual([]);
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
