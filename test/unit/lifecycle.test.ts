import { describe, expect, it } from "vitest";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { InitFailedError } from "../../provider/src/errors";
import { diffProps, Lifecycle, parseAll } from "../../provider/src/lifecycle";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { formatProbe } from "../../provider/src/host/probe";

const conn = {
  host: "198.18.1.2",
  privateKey: "KEY-SECRET",
  hostKey: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
};
const base = { connection: conn, name: "br0", addresses: ["198.18.100.1/24"] };

describe("diff (pure)", () => {
  const table: Array<
    [
      string,
      Record<string, unknown>,
      Record<string, unknown>,
      { changes: boolean; replaces: string[] },
    ]
  > = [
    ["nothing changed", base, base, { changes: false, replaces: [] }],
    [
      "an address added",
      base,
      { ...base, addresses: ["198.18.100.1/24", "198.18.101.1/24"] },
      { changes: true, replaces: [] },
    ],
    [
      "address order only",
      { ...base, addresses: ["198.18.100.1/24"] },
      { ...base, addresses: ["198.18.100.1/24"] },
      { changes: false, replaces: [] },
    ],
    ["mtu set", base, { ...base, mtu: 1400 }, { changes: true, replaces: [] }],
    ["name changed", base, { ...base, name: "br1" }, { changes: true, replaces: ["name"] }],
    [
      // an update that only records the new key, so refresh and delete can still connect
      "a rotated key",
      base,
      { ...base, connection: { ...conn, privateKey: "OTHER" } },
      { changes: true, replaces: [] },
    ],
    [
      "a password instead of a key",
      base,
      { ...base, connection: { host: conn.host, password: "pw" } },
      { changes: true, replaces: [] },
    ],
    [
      "the same connection with defaults spelled out",
      base,
      { ...base, connection: { ...conn, port: 22, user: "root", dialErrorLimit: 10 } },
      { changes: false, replaces: [] },
    ],
    [
      "a different host",
      base,
      { ...base, connection: { ...conn, host: "198.18.2.2" } },
      { changes: true, replaces: ["connection"] },
    ],
    [
      "a different port",
      base,
      { ...base, connection: { ...conn, port: 2222 } },
      { changes: true, replaces: ["connection"] },
    ],
    [
      "the same host through a bastion",
      base,
      { ...base, connection: { ...conn, proxy: { host: "198.18.9.9" } } },
      { changes: true, replaces: ["connection"] },
    ],
    // outputs carry the observed MAC; an unset macAddress input does not manage it
    [
      "observed outputs only",
      { ...base, macAddress: "52:54:00:00:00:01", ifIndex: 7 },
      base,
      { changes: false, replaces: [] },
    ],
    [
      "macAddress pinned",
      { ...base, macAddress: "52:54:00:00:00:01", ifIndex: 7 },
      { ...base, macAddress: "52:54:00:00:00:02" },
      { changes: true, replaces: [] },
    ],
    [
      "default equals explicit",
      base,
      { ...base, stp: false, ports: [] },
      { changes: false, replaces: [] },
    ],
  ];
  it.each(table)("%s", (_what, olds, news, want) => {
    const d = diffProps(bridgeModule, { __provider: "x", ...olds }, { __provider: "y", ...news });
    expect({ changes: d.changes, replaces: d.replaces }).toEqual(want);
    expect(d.deleteBeforeReplace).toBe(want.replaces.length > 0);
  });
});

describe("check", () => {
  it("names each bad property and never includes connection values", () => {
    const lc = new Lifecycle(bridgeModule, () => {
      throw new Error("check must not connect");
    });
    const r = lc.check(
      {},
      { connection: { host: "h", port: -1, password: 12345 }, name: "x".repeat(16), mtu: -5 },
    );
    expect(r.failures.map((f) => f.property)).toEqual([
      "connection.port",
      "connection.password",
      "name",
      "mtu",
    ]);
    expect(JSON.stringify(r.failures)).not.toContain("12345");
    expect(lc.check({}, { name: "br0" }).failures).toEqual([
      { property: "connection", reason: "connection: is required" },
    ]);
  });
  it("accepts good inputs unchanged", () => {
    const lc = new Lifecycle(bridgeModule, () => {
      throw new Error("check must not connect");
    });
    expect(lc.check({}, base)).toEqual({ inputs: base, failures: [] });
    expect("inputs" in parseAll(bridgeModule, base)).toBe(true);
  });
});

/** A host whose bridge never takes the mtu: the lifecycle must notice after apply. */
class StubbornHost implements Host {
  readonly label = "root@198.18.1.2:22";
  readonly ran: string[][] = [];
  private exists = false;
  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push([...req.argv]);
    // the plan arrives as one batch of commands; the bridge appears, its mtu never changes
    if (req.argv.join(" ").includes("ip link add name br0")) {
      this.exists = true;
      return { exitCode: 0, stdout: "", stderr: "" };
    }
    if (req.argv[3] === "bridge-probe.sh") {
      const link = this.exists
        ? [
            {
              ifindex: 9,
              ifname: "br0",
              flags: ["UP"],
              mtu: 1500,
              address: "aa:bb:cc:dd:ee:ff",
              linkinfo: { info_kind: "bridge", info_data: { stp_state: 0, vlan_filtering: 0 } },
              addr_info: [],
            },
          ]
        : [];
      const out = formatProbe([
        ["links", JSON.stringify(link)],
        ["routes4", "[]"],
        ["routes6", "[]"],
        ["bridge-conf", ""],
        ["ssh-route", ""],
        ["ports", ""],
        ["addr-assign-type", "3"],
      ]);
      return { exitCode: 0, stdout: out, stderr: "" };
    }
    return { exitCode: 0, stdout: "", stderr: "" };
  }
}

describe("create converges or says what did not take", () => {
  it("reports the steps still pending with the id, so Pulumi records the half-done bridge", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const err = await lc
      .create({ connection: conn, name: "br0", mtu: 9000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InitFailedError);
    expect((err as InitFailedError).message).toBe(
      'bridge "br0" on root@198.18.1.2:22: changes did not take; still to do after apply: set mtu 9000 on br0',
    );
    expect((err as InitFailedError).id).toBe("br0");
    expect(JSON.stringify((err as InitFailedError).message)).not.toContain("KEY-SECRET");
  });
});
