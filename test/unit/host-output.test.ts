import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ipBatchOutputs,
  ipLinkSchema,
  parseHostJson,
  withoutDetailDefaults,
} from "../../provider/src/host-output";

describe("parseHostJson with ipLinkSchema", () => {
  const IpLink = ipLinkSchema({ stp_state: z.number().optional() });

  it("keeps the schema's fields and drops the rest of what ip prints", () => {
    const text = JSON.stringify([
      {
        ifindex: 3,
        ifname: "br0",
        flags: ["BROADCAST", "UP"],
        mtu: 1500,
        qdisc: "noqueue",
        operstate: "UP",
        address: "02:00:00:00:00:01",
        linkinfo: { info_kind: "bridge", info_data: { stp_state: 1, hello_time: 200 } },
      },
      { ifindex: 1, ifname: "lo", mtu: 65536, group: "default" },
    ]);
    expect(parseHostJson(z.array(IpLink), text, "ip -d -j link show")).toEqual([
      {
        ifindex: 3,
        ifname: "br0",
        flags: ["BROADCAST", "UP"],
        mtu: 1500,
        address: "02:00:00:00:00:01",
        linkinfo: { info_kind: "bridge", info_data: { stp_state: 1 } },
      },
      { ifindex: 1, ifname: "lo", flags: [], mtu: 65536 },
    ]);
  });

  it("still refuses a link whose known fields have the wrong type, naming the command", () => {
    const text = JSON.stringify([{ ifindex: "3", ifname: "br0", mtu: 1500 }]);
    expect(() => parseHostJson(z.array(IpLink), text, "ip -d -j link show")).toThrow(
      /^unexpected output of ip -d -j link show: /,
    );
  });

  it("reads empty output as no links", () => {
    expect(parseHostJson(z.array(IpLink), "  \n", "ip -d -j link show")).toEqual([]);
  });
});

describe("ipBatchOutputs", () => {
  it("gives each batch line's JSON in order, and '' for a later line that did not run", () => {
    expect(ipBatchOutputs('[{"a":1}]\n[]\n', 3, 2, "ip -batch")).toEqual(['[{"a":1}]', "[]", ""]);
  });

  it("fails naming the listings when a required one is missing", () => {
    expect(() =>
      ipBatchOutputs('[{"a":1}]\n', 2, 2, "ip -d -j -batch (link show, route show)"),
    ).toThrow("unexpected output of ip -d -j -batch (link show, route show): 1 of 2 listings");
  });
});

describe("withoutDetailDefaults", () => {
  it("drops what ip -d adds to a route and keeps everything else", () => {
    expect(
      withoutDetailDefaults({ type: "unicast", dst: "default", protocol: "boot", scope: "global" }),
    ).toEqual({ dst: "default" });
    const kept = { type: "blackhole", dst: "198.18.0.0/24", protocol: "static", scope: "link" };
    expect(withoutDetailDefaults(kept)).toEqual(kept);
  });
});
