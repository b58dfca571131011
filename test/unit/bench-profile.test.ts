// The bench's profile sums: what counts (from the first provider call on) and where it goes.
import { describe, expect, it } from "vitest";
import { mergeSums, renderSums, sumProfile, type CpuProfile } from "../../bench/profile";

const DIST = "file:///repo/dist/provider/src";

// root -> start-up (pulumi); root -> create (provider) -> parse (zod), and -> ssh2 -> writeBuffer
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: -1 }, children: [2, 3, 7] },
    {
      id: 2,
      callFrame: {
        functionName: "load",
        url: "file:///repo/node_modules/@pulumi/pulumi/index.js",
        lineNumber: 0,
      },
    },
    {
      id: 3,
      callFrame: { functionName: "create", url: `${DIST}/lifecycle.js`, lineNumber: 9 },
      children: [4, 5],
    },
    {
      id: 4,
      callFrame: {
        functionName: "parse",
        url: "file:///repo/node_modules/zod/v4/core/schemas.cjs",
        lineNumber: 1,
      },
    },
    {
      id: 5,
      callFrame: {
        functionName: "sendPacket",
        url: "file:///repo/node_modules/ssh2/lib/protocol/Protocol.js",
        lineNumber: 341,
      },
      children: [6],
    },
    { id: 6, callFrame: { functionName: "writeBuffer", url: "", lineNumber: -1 } },
    { id: 7, callFrame: { functionName: "(idle)", url: "", lineNumber: -1 } },
  ],
  // start-up (2 ms), then create itself, zod, ssh2, idle, start-up code again
  samples: [2, 2, 3, 4, 4, 6, 7, 2],
  timeDeltas: [1000, 1000, 1000, 2000, 2000, 3000, 5000, 1000],
};

describe("bench profile sums", () => {
  it("counts from the first provider sample on, without idle time", () => {
    const s = sumProfile(profile);
    expect(s.totalMs).toBe(1 + 2 + 2 + 3 + 1);
    expect(Object.fromEntries(s.byCategory)).toEqual({
      "provider code (self)": 1,
      zod: 4,
      "ssh2 and its socket writes": 3,
      "gRPC, protobuf and the plugin": 1,
    });
    expect(s.byLeaf.get("writeBuffer :0")).toBe(3);
    expect(s.byProviderFrame.get("create dist/provider/src/lifecycle.js:10")).toBe(9 - 1);
    expect(s.byProviderFrame.get("(no provider frame)")).toBe(1);
  });

  it("counts the start-up too with all, and adds profiles up", () => {
    const all = sumProfile(profile, { all: true });
    expect(all.totalMs).toBe(11);
    const both = mergeSums([all, sumProfile(profile)]);
    expect(both.totalMs).toBe(20);
    expect(both.byCategory.get("zod")).toBe(8);
    expect(renderSums(both, 1).split("\n").slice(0, 4)).toEqual([
      "sampled 20 ms",
      "",
      "by category:",
      "      8 ms  40.0%  zod",
    ]);
  });
});
