import { describe, expect, it } from "vitest";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { InitFailedError, SshConnectionError } from "../../provider/src/errors";
import { quoteArgv } from "../../provider/src/host/quote";
import { diffProps, Lifecycle, parseAll, type DiffResult } from "../../provider/src/lifecycle";
import { resourceModules } from "../../provider/src/registry";
import { UNKNOWN } from "../../provider/src/unknown";
import { bridgeModule } from "../../provider/src/resources/bridge";
import { fakeBridgeProbe } from "../support/fake-bridge";

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

describe("replace order", () => {
  const unpinned = { host: "198.18.1.2", privateKey: "KEY-SECRET" };
  const other = "SHA256:AAAbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";
  const table: Array<[string, Record<string, unknown>, Record<string, unknown>, boolean]> = [
    ["the same host, a new name: names clash, delete first", base, { ...base, name: "br1" }, true],
    [
      "another host (no host keys pinned): create first, the old one stays if it fails",
      { ...base, connection: unpinned },
      { ...base, connection: { ...unpinned, host: "198.18.2.2" } },
      false,
    ],
    [
      "another host and a new name: create first",
      { ...base, connection: unpinned },
      { ...base, name: "br1", connection: { ...unpinned, host: "198.18.2.2" } },
      false,
    ],
    [
      "another host key pinned: another machine, create first",
      base,
      { ...base, connection: { ...conn, host: "198.18.2.2", hostKey: other } },
      false,
    ],
    [
      "the same pinned host key behind another address is the same machine: delete first",
      base,
      { ...base, connection: { ...conn, host: "hv1.example" } },
      true,
    ],
    [
      "an unknown connection may be the same host: delete first",
      base,
      { ...base, connection: UNKNOWN },
      true,
    ],
  ];
  it.each(table)("%s", (_what, olds, news, deleteFirst) => {
    const d = diffProps(bridgeModule, olds, news);
    expect(d.replaces.length).toBeGreaterThan(0);
    expect(d.deleteBeforeReplace).toBe(deleteFirst);
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
  private marked = false;
  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push([...req.argv]);
    // the plan arrives as one batch of commands (its ip steps as `ip -batch` lines, without the
    // leading "ip"); the bridge appears, its mtu never changes
    if (req.argv.join(" ").includes("link add name br0")) {
      this.exists = true;
      this.marked = req.argv.join(" ").includes("alias pulumi-hypervisor");
      return { exitCode: 0, stdout: "", stderr: "" };
    }
    if (req.argv[3] === "bridge-probe.sh") {
      const br0 = { mtu: 1500, ...(this.marked ? { ifalias: "pulumi-hypervisor" } : {}) };
      return { exitCode: 0, stdout: fakeBridgeProbe(this.exists ? br0 : undefined), stderr: "" };
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

/** A host whose connection drops while the create batch runs (after its first command). */
class DroppingHost extends StubbornHost {
  override async run(req: RunRequest): Promise<RunResult> {
    if (!req.argv.join(" ").includes("link add name br0")) return super.run(req);
    await super.run(req); // the bridge was created before the connection dropped
    throw new SshConnectionError(
      this.label,
      "lost",
      `${this.label}: connection lost while running ${quoteArgv(req.argv)}: keepalive timeout`,
    );
  }
}

/** A host that answers the create, then cannot be observed (the probe fails). */
class BlindAfterApplyHost extends StubbornHost {
  private applied = false;
  override async run(req: RunRequest): Promise<RunResult> {
    if (req.argv.join(" ").includes("link add name br0")) this.applied = true;
    else if (this.applied && req.argv[3] === "bridge-probe.sh") {
      return { exitCode: 1, stdout: "", stderr: "ip: cannot allocate memory" };
    }
    return super.run(req);
  }
}

describe("a half-done create is recorded with its id", () => {
  it("when the connection drops mid-apply; the message names the step, not the remote script", async () => {
    const lc = new Lifecycle(bridgeModule, () => new DroppingHost());
    const err = await lc.create({ connection: conn, name: "br0" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InitFailedError);
    const e = err as InitFailedError;
    expect(e.message).toBe(
      'bridge "br0" on root@198.18.1.2:22: connection lost applying from step 1 of 4 (create bridge br0); ' +
        "the host may be half-changed, the next update finishes it",
    );
    expect(e.id).toBe("br0");
    expect(e.properties).toEqual({ connection: conn, name: "br0" });
  });
  it("when the observation after apply fails", async () => {
    const lc = new Lifecycle(bridgeModule, () => new BlindAfterApplyHost());
    const err = await lc.create({ connection: conn, name: "br0" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InitFailedError);
    expect((err as InitFailedError).id).toBe("br0");
    expect((err as InitFailedError).message).toMatch(
      /^bridge "br0" on root@198\.18\.1\.2:22: observing failed: .*cannot allocate memory/,
    );
  });
});

describe("a connection lost while observing", () => {
  it("says so without quoting the probe script", async () => {
    const host: Host = {
      label: "root@198.18.1.2:22",
      run: async (req) => {
        throw new SshConnectionError(
          "root@198.18.1.2:22",
          "lost",
          `root@198.18.1.2:22: connection lost while running ${quoteArgv(req.argv)}: keepalive timeout`,
        );
      },
    };
    const lc = new Lifecycle(bridgeModule, () => host);
    await expect(lc.delete("br0", { connection: conn, name: "br0" })).rejects.toThrow(
      new Error('bridge "br0" on root@198.18.1.2:22: observing failed: connection lost'),
    );
  });
});

describe("a delete-first replacement that would fail", () => {
  const olds = { ...base, stp: false, ports: [], macAddress: "aa:bb:cc:dd:ee:ff", ifIndex: 9 };
  it("keeps the old object: Delete checks the new one against the host first", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    await lc.create({ connection: conn, name: "br0" });
    const news = { ...base, name: "br1", ports: ["eth9"] };
    expect(lc.diff("br0", olds, news).deleteBeforeReplace).toBe(true);
    await expect(lc.delete("br0", olds)).rejects.toThrow(
      'bridge "br0" on root@198.18.1.2:22: not deleted, because its replacement "br1" would fail: port "eth9" does not exist on the host',
    );
    expect(host.ran.filter((a) => a.join(" ").includes("ip link del"))).toEqual([]);
  });
  it("deletes when the replacement plans, and a plain delete (destroy) checks nothing", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    await lc.create({ connection: conn, name: "br0" });
    const probes = (): number => host.ran.filter((a) => a[3] === "bridge-probe.sh").length;
    const deletes = (): number => host.ran.filter((a) => a.includes("del")).length;
    // this stub never removes the bridge, so each delete ends "did not take" after running it
    const start = probes();
    lc.diff("br0", olds, { ...base, name: "br1" });
    await expect(lc.delete("br0", olds)).rejects.toThrow(/delete did not take/);
    expect([probes() - start, deletes()]).toEqual([3, 1]); // the replacement, before, after
    await expect(lc.delete("br0", olds)).rejects.toThrow(/delete did not take/);
    expect([probes() - start, deletes()]).toEqual([5, 2]); // before, after
  });
});

/** A host that prints a machine identity (host-identity.sh). */
class IdentifiedHost extends StubbornHost {
  constructor(private readonly identity: string) {
    super();
  }
  override async run(req: RunRequest): Promise<RunResult> {
    if (req.argv[3] === "host-identity.sh") {
      return { exitCode: 0, stdout: this.identity, stderr: "" };
    }
    return super.run(req);
  }
}

describe("a create-first replacement on another address", () => {
  const unpinned = { host: "198.18.1.2", privateKey: "KEY-SECRET" };
  const olds = { ...base, connection: unpinned, stp: false, ports: [], ifIndex: 9 };
  const news = { ...base, connection: { ...unpinned, host: "hv1.example" } };
  const run = async (a: string, b: string): Promise<{ err: unknown; deletes: number }> => {
    const old = new IdentifiedHost(a);
    const other = new IdentifiedHost(b);
    const lc = new Lifecycle(bridgeModule, (c) => (c.host === "hv1.example" ? other : old));
    await lc.create({ connection: unpinned, name: "br0" });
    expect(lc.diff("br0", olds, news).deleteBeforeReplace).toBe(false);
    const err = await lc.delete("br0", olds).catch((e: unknown) => e);
    return { err, deletes: old.ran.filter((x) => x.includes("del")).length };
  };
  it("does not delete the old object when both addresses reach the same machine", async () => {
    const same = "b1c0ffee\nnet:[4026532001]\nmnt:[4026532002]\n";
    expect(await run(same, same)).toEqual({ err: undefined, deletes: 0 });
  });
  it("deletes it on another machine", async () => {
    const { err, deletes } = await run("boot-a\nnet:[1]\nmnt:[2]", "boot-b\nnet:[1]\nmnt:[2]");
    expect(deletes).toBe(1);
    expect(String(err)).toMatch(/delete did not take/); // this stub never removes the bridge
  });
});

describe("unknown values (a preview with inputs another resource computes)", () => {
  const neverConnects = (): Host => {
    throw new Error("a preview with unknowns must not connect");
  };
  it.each(Object.keys(resourceModules))(
    "%s: unknowns are never a check failure; a known bad value beside them still is",
    (type) => {
      const mod = resourceModules[type]!;
      const lc = new Lifecycle(mod, neverConnects);
      const allUnknown = Object.fromEntries(mod.inputKeys.map((k) => [k, UNKNOWN]));
      expect(lc.check({}, { ...allUnknown, connection: UNKNOWN }).failures).toEqual([]);
      expect(lc.check({}, { ...allUnknown, connection: { ...conn, host: UNKNOWN } })).toEqual({
        inputs: { ...allUnknown, connection: { ...conn, host: UNKNOWN } },
        failures: [],
      });
      const bad = lc.check({}, { ...allUnknown, connection: UNKNOWN, name: "not a name!" });
      expect(bad.failures.map((f) => f.property)).toEqual(["name"]);
      const badPort = lc.check({}, { ...allUnknown, connection: { host: UNKNOWN, port: -1 } });
      expect(badPort.failures.map((f) => f.property)).toEqual(["connection.port"]);
    },
  );
  it("an unknown element of a list is not a failure; a bad known element is", () => {
    const lc = new Lifecycle(bridgeModule, neverConnects);
    const r = lc.check({}, { ...base, addresses: [UNKNOWN, "10.0.0.300/24"] });
    expect(r.failures.map((f) => f.property)).toEqual(["addresses[1]"]);
  });

  const olds = { ...base, stp: false, ports: [], macAddress: "52:54:00:00:00:01", ifIndex: 7 };
  const table: Array<[string, Record<string, unknown>, Partial<DiffResult>]> = [
    [
      "an unknown identity input plans a replace",
      { ...base, name: UNKNOWN },
      { changes: true, replaces: ["name"], detailedDiff: { name: "UPDATE_REPLACE" } },
    ],
    [
      "an unknown live input plans an update",
      { ...base, mtu: UNKNOWN },
      { changes: true, replaces: [], detailedDiff: { mtu: "ADD" } },
    ],
    [
      "an unknown element of a live list plans an update",
      { ...base, addresses: ["198.18.100.1/24", UNKNOWN] },
      { changes: true, replaces: [], detailedDiff: { addresses: "UPDATE" } },
    ],
    [
      "an unknown connection plans a replace",
      { ...base, connection: UNKNOWN },
      { changes: true, replaces: ["connection"], detailedDiff: { connection: "UPDATE_REPLACE" } },
    ],
    [
      "an unknown connection host plans a replace",
      { ...base, connection: { ...conn, host: UNKNOWN } },
      { changes: true, replaces: ["connection"] },
    ],
    [
      "an unknown credential is an update that records it",
      { ...base, connection: { ...conn, privateKey: UNKNOWN } },
      { changes: true, replaces: [], detailedDiff: { connection: "UPDATE" } },
    ],
    [
      "an unknown credential beside a new host still replaces",
      { ...base, connection: { ...conn, host: "198.18.2.2", privateKey: UNKNOWN } },
      { changes: true, replaces: ["connection"] },
    ],
    [
      "known values beside an unknown are compared as before",
      { ...base, mtu: UNKNOWN, stp: true },
      { changes: true, replaces: [], changed: ["stp", "mtu"] },
    ],
  ];
  it.each(table)("%s", (_what, news, want) => {
    const d = diffProps(bridgeModule, olds, news);
    expect(d).toMatchObject(want);
    expect(d.deleteBeforeReplace).toBe(d.replaces.length > 0);
  });

  it("reports added and removed properties as ADD and DELETE against the old inputs", () => {
    const oldInputs = { ...base, stp: true };
    const d = diffProps(bridgeModule, { ...olds, stp: true }, { ...base, mtu: 1400 }, oldInputs);
    expect(d.detailedDiff).toEqual({ stp: "DELETE", mtu: "ADD" });
    const r = diffProps(bridgeModule, olds, { ...base, name: "br1" }, base);
    expect(r.detailedDiff).toEqual({ name: "UPDATE_REPLACE" });
  });
});

describe("read", () => {
  it("returns no inputs when nothing drifted, so the engine keeps the program's", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const { outs } = await lc.create({ connection: conn, name: "br0" });
    const r = await lc.read("br0", outs);
    expect(r.id).toBe("br0");
    expect(r.inputs).toBeUndefined();
  });
  it("returns the recorded inputs with their observed values, so refresh updates them", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    await lc.create({ connection: conn, name: "br0" });
    const r = await lc.read("br0", {
      connection: conn,
      name: "br0",
      addresses: [],
      stp: true,
      ports: [],
      vlanFiltering: false,
      allowQemuBridgeHelper: false,
      macAddress: "00:00:00:00:00:01",
      ifIndex: 9,
      __provider: "x",
    });
    expect(r.inputs).toEqual({
      connection: conn,
      name: "br0",
      addresses: [],
      stp: false,
      ports: [],
      vlanFiltering: false,
      allowQemuBridgeHelper: false,
      macAddress: "aa:bb:cc:dd:ee:ff",
    });
  });
});

/** A host whose bridge commands hang until they are aborted; records what it saw. */
class HangingHost extends StubbornHost {
  aborted = 0;
  override async run(req: RunRequest): Promise<RunResult> {
    // The create batch carries its commands as the batch script's positional parameters.
    if (!req.argv.join(" ").includes("link add name br0")) return super.run(req);
    return new Promise<RunResult>((_resolve, reject) => {
      req.signal?.addEventListener("abort", () => {
        this.aborted++;
        reject(new Error("session closed"));
      });
    });
  }
}

describe("an operation that is cancelled or times out", () => {
  it("stops the command in flight and records the half-done create with its id", async () => {
    const host = new HangingHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const cancel = new AbortController();
    const creating = lc.create({ connection: conn, name: "br0" }, { signal: cancel.signal });
    await new Promise((r) => setTimeout(r, 20));
    cancel.abort(new Error("cancelled by the engine"));
    const err = await creating.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InitFailedError);
    expect((err as InitFailedError).message).toBe(
      'bridge "br0" on root@198.18.1.2:22: cancelled by the engine',
    );
    expect((err as InitFailedError).id).toBe("br0");
    expect(host.aborted).toBe(1);
  });
  it("runs nothing once the signal is aborted", async () => {
    const host = new StubbornHost();
    const lc = new Lifecycle(bridgeModule, () => host);
    const signal = AbortSignal.abort(new Error("timed out after 1 s (customTimeouts)"));
    await expect(lc.delete("br0", { connection: conn, name: "br0" }, { signal })).rejects.toThrow(
      /timed out after 1 s \(customTimeouts\)/,
    );
    expect(host.ran).toEqual([]);
  });
});
