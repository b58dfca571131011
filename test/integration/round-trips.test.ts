// Remote commands per operation, counted by the lab host's sshd ("Starting session" per exec
// channel, LogLevel VERBOSE): create, update and delete are two round trips (observe; apply with
// the observation after it), a refresh one, and observations asked at once share one command.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../../lab";
import type { DynamicProviderPlugin, Engine } from "../../lab/engine/engine";
import { FakeEngine } from "../../lab/engine/fake-engine";
import { NativeProviderPlugin, urnOf } from "../../lab/engine/native-engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";
import { Connection } from "../../provider/src/host/connection";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { Lifecycle } from "../../provider/src/lifecycle";
import { bridgeModule } from "../../provider/src/resources/bridge";

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let h: LabHost;

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "rtt", hosts: 1 }));
  h = lab.hosts[0]!;
});

afterAll(async () => {
  await closeAllHosts();
  await stopLabWithEngine({ lab, plugin });
});

/** The remote commands the host's sshd has run so far. */
function sessions(): number {
  return readFileSync(h.sshdLogPath, "utf8")
    .split("\n")
    .filter((l) => /\bStarting session: /.test(l)).length;
}

// sshd writes its log line as the session starts: wait until the count stops moving.
async function settled(): Promise<number> {
  let last = -1;
  let now = sessions();
  while (now !== last) {
    await new Promise((r) => setTimeout(r, 150));
    last = now;
    now = sessions();
  }
  return now;
}

async function commandsOf(op: () => Promise<unknown>): Promise<number> {
  const before = await settled();
  await op();
  return (await settled()) - before;
}

const report = (what: string, n: number): void => {
  process.stderr.write(`round trips: ${what}: ${n} sshd sessions\n`);
};

describe("commands per operation through the engine (host lock on)", () => {
  const bridge = (name: string, mtu?: number) =>
    spec("Bridge", name, {
      connection: h.connection(),
      name,
      persistence: "none",
      ...(mtu !== undefined ? { mtu } : {}),
    });
  const tap = () =>
    spec("TapDevice", "tap-rtt", {
      connection: h.connection(),
      name: "tap-rtt",
      persistence: "none",
    });

  it("the first create pays the lookups once; then create, update, delete are observe + apply beside the lock holder", async () => {
    const first = await commandsOf(async () => engine.up([await bridge("br-rtt-a")]));
    report("first Bridge create on a new host", first);
    // the SSH client's address, the lock holder, observe, apply with the observation after it
    expect(first).toBe(4);

    const create = await commandsOf(async () =>
      engine.up([await bridge("br-rtt-a"), await bridge("br-rtt-b")]),
    );
    report("Bridge create", create);
    const update = await commandsOf(async () =>
      engine.up([await bridge("br-rtt-a"), await bridge("br-rtt-b", 1400)]),
    );
    report("Bridge update", update);
    const tapCreate = await commandsOf(async () =>
      engine.up([await bridge("br-rtt-a"), await bridge("br-rtt-b", 1400), await tap()]),
    );
    report("TapDevice create", tapCreate);
    const del = await commandsOf(async () => engine.up([await bridge("br-rtt-a"), await tap()]));
    report("Bridge delete", del);
    const refresh = await commandsOf(() => engine.refresh());
    report("refresh of a Bridge and a TapDevice (one at a time)", refresh);
    // two round trips each; the third session is the host lock's holder, opened beside the first
    expect([create, update, tapCreate, del]).toEqual([3, 3, 3, 3]);
    expect(refresh).toBe(2);
    expect((await h.exec(["ip", "link", "show", "br-rtt-b"])).code).not.toBe(0);
    expect((await h.exec(["ip", "link", "show", "br-rtt-a"])).code).toBe(0);
    await engine.destroy();
  });
});

describe("commands per operation without the host lock, and observations at once", () => {
  it("create, update and delete are two commands each; ten refreshes at once are one", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    const lc = new Lifecycle(bridgeModule, () => host);
    const news = (name: string, mtu?: number) => ({
      connection: h.connection(),
      name,
      persistence: "none",
      ...(mtu !== undefined ? { mtu } : {}),
    });
    // a new connection of this process: its first operation also asks the client's address
    const first = await commandsOf(() => lc.create(news("br-rtt-0")));
    report("first unlocked create of this process", first);
    expect(first).toBe(3);
    const names = Array.from({ length: 10 }, (_, i) => `br-rtt-${i}`);
    const outs: Record<string, Record<string, unknown>> = {};
    let creates = 0;
    for (const name of names.slice(1)) {
      creates += await commandsOf(async () => {
        outs[name] = (await lc.create(news(name))).outs;
      });
    }
    expect(creates).toBe(2 * 9);
    const update = await commandsOf(() =>
      lc.update("br-rtt-1", outs["br-rtt-1"]!, news("br-rtt-1", 1400)),
    );
    expect(update).toBe(2);
    outs["br-rtt-0"] = (await lc.read("br-rtt-0", news("br-rtt-0"))).props;
    let ms = 0;
    const reads = await commandsOf(async () => {
      const t0 = Date.now();
      await Promise.all(names.map((n) => lc.read(n, outs[n] ?? news(n))));
      ms = Date.now() - t0;
    });
    report(`ten refreshes at once on one host (${ms} ms)`, reads);
    expect(reads).toBe(1);
    let deletes = 0;
    for (const name of names) {
      deletes += await commandsOf(() => lc.delete(name, outs[name] ?? news(name)));
    }
    expect(deletes).toBe(2 * 10);
    const left = await h.exec(["ip", "-br", "link", "show", "type", "bridge"]);
    expect(left.stdout).not.toContain("br-rtt-");
  });
});

describe("a native preview of many resources on one host", () => {
  it("observes them in one command when the engine asks for them at once", async () => {
    const fake = await FakeEngine.start();
    const p = await NativeProviderPlugin.start({ engineAddress: fake.address });
    try {
      await p.handshake();
      await p.configure({ connection: h.connection() });
      const preview = (i: number) =>
        p.create(
          urnOf("hypervisor:index:Bridge", `b${i}`),
          { name: `br-rtp-${i}` },
          { preview: true },
        );
      // a new connection of this plugin: the first preview also asks the client's address
      const first = await commandsOf(() => preview(0));
      expect(first).toBe(2);
      let planned: unknown[] = [];
      let ms = 0;
      const ten = await commandsOf(async () => {
        const t0 = Date.now();
        planned = await Promise.all(Array.from({ length: 10 }, (_, i) => preview(i)));
        ms = Date.now() - t0;
      });
      report(`ten native previews at once on one host (${ms} ms)`, ten);
      expect(ten).toBe(1);
      for (const c of planned as { properties: Record<string, unknown> }[]) {
        expect(c.properties["plannedSteps"]).toEqual(
          expect.arrayContaining([expect.stringMatching(/^create bridge br-rtp-/)]),
        );
      }
    } finally {
      await p.stop();
      fake.stop();
    }
  });
});
