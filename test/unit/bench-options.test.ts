// The bench's command line: defaults, each flag, and specific errors for bad values.
import { describe, expect, it } from "vitest";
import { parseBenchArgs } from "../../bench/options";

describe("bench options", () => {
  it("defaults to 3 hosts x 20 resources, every mode and schedule, at 0 and 20 ms", () => {
    expect(parseBenchArgs([])).toEqual({
      hosts: 3,
      resources: 20,
      latencyMs: 20,
      delays: [0, 20],
      bandwidthMbit: undefined,
      modes: ["pooled", "per-command", "baseline"],
      labName: "bench",
      schedules: ["serial", "parallel"],
      json: undefined,
      peers: ["ansible-tuned", "ansible-defaults", "floor"],
      peersEveryDelay: false,
      cpuProf: undefined,
      quick: false,
      repeat: 3,
    });
  });

  it("--quick is a smoke run: 1 host x 5 resources, 0 ms, serial; flags still win", () => {
    expect(parseBenchArgs(["--quick"])).toMatchObject({
      hosts: 1,
      resources: 5,
      delays: [0],
      schedules: ["serial"],
      modes: ["pooled", "per-command"],
      peers: ["ansible-tuned", "floor"],
      quick: true,
      repeat: 1,
    });
    expect(parseBenchArgs(["--quick", "--hosts", "2", "--delays", "0,20"])).toMatchObject({
      hosts: 2,
      delays: [0, 20],
    });
  });

  it("--lab names the lab, so two benches can run at once; a name the lab refuses is an error", () => {
    expect(parseBenchArgs(["--lab", "bench2"]).labName).toBe("bench2");
    expect(() => parseBenchArgs(["--lab", "../x"])).toThrow(
      '--lab must be a lowercase name of 1-24 letters, digits and dashes, not "../x"',
    );
  });

  it("takes the tools to compare with, none, and a profile directory", () => {
    expect(parseBenchArgs(["--peers", "floor"])).toMatchObject({
      peers: ["floor"],
      peersEveryDelay: true,
    });
    expect(parseBenchArgs(["--peers=none"]).peers).toEqual([]);
    expect(parseBenchArgs(["--cpu-prof", "/tmp/p"]).cpuProf).toBe("/tmp/p");
    expect(() => parseBenchArgs(["--peers", "floor,chef"])).toThrow(
      '--peers takes ansible-tuned,ansible-defaults,floor, not "chef"',
    );
  });

  it("takes every flag, in both --flag value and --flag=value forms", () => {
    expect(
      parseBenchArgs([
        "--hosts",
        "2",
        "--resources=5",
        "--latency",
        "0",
        "--modes",
        "pooled",
        "--schedules=parallel",
        "--json",
        "out.json",
      ]),
    ).toMatchObject({
      hosts: 2,
      resources: 5,
      latencyMs: 0,
      delays: [0],
      modes: ["pooled"],
      schedules: ["parallel"],
      json: "out.json",
    });
    expect(parseBenchArgs(["--delays", "0,5,40"]).delays).toEqual([0, 5, 40]);
    // the compressed mode runs only when asked for
    expect(parseBenchArgs(["--modes", "pooled,compressed", "--bandwidth", "10"])).toMatchObject({
      modes: ["pooled", "compressed"],
      bandwidthMbit: 10,
    });
  });

  it("rejects bad values naming the flag", () => {
    expect(() => parseBenchArgs(["--hosts", "0"])).toThrow(
      "--hosts must be an integer from 1 to 19, not 0",
    );
    expect(() => parseBenchArgs(["--resources", "2.5"])).toThrow(
      "--resources must be an integer from 1 to 200, not 2.5",
    );
    expect(() => parseBenchArgs(["--modes", "pooled,fast"])).toThrow(
      '--modes takes pooled,per-command,baseline,compressed, not "fast"',
    );
    expect(() => parseBenchArgs(["--bandwidth", "0"])).toThrow(
      "--bandwidth must be an integer from 1 to 10000, not 0",
    );
    expect(() => parseBenchArgs(["--repeat", "0"])).toThrow(
      "--repeat must be an integer from 1 to 9, not 0",
    );
    expect(() => parseBenchArgs(["--frobnicate"])).toThrow(/Unknown option '--frobnicate'/);
    expect(() => parseBenchArgs(["--help"])).toThrow(/^usage: npx tsx bench\/fleet.ts/);
  });
});
