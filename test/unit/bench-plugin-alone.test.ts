// The bench's plugin-alone runs: the provider that does nothing answers with the recorded outputs,
// the recording holds no connection, and the report splits the controller CPU per operation.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ResourceState } from "../../lab/engine/engine";
import { aloneProviderText, recordingOf, type PluginAloneResult } from "../../bench/plugin-alone";
import { aloneLines } from "../../bench/report";

const alone = require("../../bench/plugin-alone-provider.js") as {
  handlersFor(type: string): {
    check(olds: unknown, news: Record<string, unknown>): Promise<{ inputs: unknown }>;
    create(inputs: Record<string, unknown>): Promise<{ id: string; outs: unknown }>;
  };
};

const SIG = "4dabf18193072939515e22adb298388d";
const secret = (value: unknown) => ({ [SIG]: "1b47061264138c4ac30d75fd1eb44270", value });
const connection = { host: "198.18.0.2", port: 2222, user: "root", privateKey: "KEY-TEXT" };

const state = (name: string, ifIndex: number): ResourceState => ({
  urn: `urn:pulumi:test::test::pulumi-nodejs:dynamic/hypervisor:TapDevice::h0-${name}`,
  type: "pulumi-nodejs:dynamic/hypervisor:TapDevice",
  name: `h0-${name}`,
  id: `198.18.0.2/${name}`,
  inputs: { name, bridge: "bbr0", connection: secret(connection), __provider: "text" },
  outputs: { name, bridge: "bbr0", ifIndex, connection: secret(connection), __provider: "text" },
});

const dir = mkdtempSync(path.join(tmpdir(), "bench-alone-test-"));
afterAll(() => {
  delete process.env["PULUMI_HYPERVISOR_BENCH_RECORDED"];
  rmSync(dir, { recursive: true, force: true });
});

describe("bench plugin alone", () => {
  it("records inputs and outputs without the connection or __provider", () => {
    const rec = recordingOf([state("btap0", 7)]);
    expect(rec).toEqual([
      {
        key: "TapDevice 198.18.0.2:2222 btap0",
        id: "198.18.0.2/btap0",
        inputs: { name: "btap0", bridge: "bbr0" },
        outputs: { name: "btap0", bridge: "bbr0", ifIndex: 7 },
      },
    ]);
    expect(JSON.stringify(rec)).not.toContain("KEY-TEXT");
  });

  it("answers check and create with the recording and the call's own connection", async () => {
    const file = path.join(dir, "recorded.json");
    writeFileSync(file, JSON.stringify(recordingOf([state("btap0", 7), state("btap1", 8)])));
    process.env["PULUMI_HYPERVISOR_BENCH_RECORDED"] = file;
    const tap = alone.handlersFor("TapDevice");
    const news = { name: "btap1", bridge: "bbr0", connection: secret(connection) };
    await expect(tap.check({}, news)).resolves.toEqual({
      inputs: { name: "btap1", bridge: "bbr0", connection: secret(connection) },
      failures: [],
    });
    await expect(tap.create(news)).resolves.toEqual({
      id: "198.18.0.2/btap1",
      outs: { name: "btap1", bridge: "bbr0", ifIndex: 8, connection: secret(connection) },
    });
    // a plain connection finds the same record; another type or host finds none
    await expect(tap.create({ ...news, connection })).resolves.toMatchObject({
      id: "198.18.0.2/btap1",
    });
    await expect(alone.handlersFor("Bridge").create(news)).rejects.toThrow(
      "nothing recorded for Bridge 198.18.0.2:2222 btap1",
    );
    await expect(tap.create({ ...news, connection: { ...connection, port: 22 } })).rejects.toThrow(
      "nothing recorded for TapDevice 198.18.0.2:22 btap1",
    );
  });

  it("puts the provider that does nothing in place of the real one in __provider", () => {
    const text =
      'exports.handler = __f0;\nreturn (o,n)=>require("pulumi-hypervisor/provider").handlersFor(type).check(o,n);\n' +
      'return i=>require("pulumi-hypervisor/provider").handlersFor(type).create(i);\n';
    const swapped = aloneProviderText(text);
    expect(swapped).not.toContain("pulumi-hypervisor/provider");
    expect(swapped.match(/plugin-alone-provider\.js"\)\.handlersFor/g)).toHaveLength(2);
    expect(
      readFileSync(path.join(__dirname, "../../bench/plugin-alone-provider.js"), "utf8"),
    ).toContain("exports.handlersFor");
    expect(() => aloneProviderText("exports.handler = __f0;")).toThrow(
      'does not load require("pulumi-hypervisor/provider")',
    );
  });

  it("splits each run's CPU per operation into the plugin's and the provider's", () => {
    const a = (trial: number, schedule: "serial" | "parallel", us: number): PluginAloneResult => ({
      schedule,
      delayMs: 0,
      trial,
      ops: 180,
      controllerCpuUs: us,
    });
    // trial 1: (360 + 360) ms over 360 operations = 2.0 ms; trial 2: 2.5 ms
    const lines = aloneLines(
      [6, 7],
      [1, 2],
      [
        a(1, "serial", 360_000),
        a(1, "parallel", 360_000),
        a(2, "serial", 450_000),
        a(2, "parallel", 450_000),
      ],
    );
    expect(lines).toEqual([
      "  of which the dynamic-provider plugin alone (the same calls and payloads, a provider that does nothing): median 2.3 ms; runs 2.0 ms, 2.5 ms",
      "  and the provider's own work: median 4.3 ms; runs 4.0 ms, 4.5 ms",
    ]);
    // a trial without a plugin-alone run: no split rather than a wrong one
    expect(aloneLines([6, 7], [1, 2], [a(1, "serial", 360_000)])).toEqual([]);
  });
});
