// Remote commands per operation, counted on the lab host: each session sshd starts ("Starting
// session", LogLevel VERBOSE) and each request a remote shell runs in its session (a line in
// /run/pulumi-hypervisor/trace-requests, which these tests create). Create, update and delete are
// two round trips (observe; apply with the observation after it), a refresh one, and observations
// asked at once share one command. A shell's hello carries the SSH client's address, so asking
// for it is no command of its own.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lab, LabHost } from "../../lab";
import type { DynamicProviderPlugin, Engine } from "../../lab/engine/engine";
import { FakeEngine } from "../../lab/engine/fake-engine";
import {
  NativeEngine,
  NativeProviderPlugin,
  secret,
  urnOf,
  type NativeResourceSpec,
} from "../../lab/engine/native-engine";
import { spec, startLabWithEngine, stopLabWithEngine } from "../../lab/harness";
import { Connection } from "../../provider/src/host/connection";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { Lifecycle } from "../../provider/src/lifecycle";
import { bridgeModule } from "../../provider/src/resources/bridge";

let lab: Lab;
let plugin: DynamicProviderPlugin;
let engine: Engine;
let h: LabHost;
let trace: string;

beforeAll(async () => {
  ({ lab, plugin, engine } = await startLabWithEngine({ name: "rtt", hosts: 1 }));
  h = lab.hosts[0]!;
  // the host's /run is a tmpfs of its own (lab/mounts.ts), seen here through its sshd's root
  const made = await h.exec([
    "sh",
    "-c",
    "mkdir -p /run/pulumi-hypervisor && : > /run/pulumi-hypervisor/trace-requests",
  ]);
  expect(made.code).toBe(0);
  trace = `/proc/${h.sshdPid}/root/run/pulumi-hypervisor/trace-requests`;
});

afterAll(async () => {
  await closeAllHosts();
  await stopLabWithEngine({ lab, plugin });
});

/** Sessions sshd started, and the remote commands run so far (sessions that were no shell, and requests). */
function counts(): { sessions: number; commands: number } {
  const sessions = readFileSync(h.sshdLogPath, "utf8")
    .split("\n")
    .filter((l) => /\bStarting session: /.test(l)).length;
  const lines = readFileSync(trace, "utf8").split("\n");
  const shells = lines.filter((l) => / shell$/.test(l)).length;
  const requests = lines.filter((l) => /^[\d.]+ \d+ \d+ \d+$/.test(l)).length;
  return { sessions, commands: sessions - shells + requests };
}

// sshd and the shells write their lines as a command starts or ends: wait until they stop moving.
async function settled(): Promise<{ sessions: number; commands: number }> {
  let last = "";
  let now = counts();
  while (JSON.stringify(now) !== last) {
    await new Promise((r) => setTimeout(r, 150));
    last = JSON.stringify(now);
    now = counts();
  }
  return now;
}

let lastSessions = 0;

async function commandsOf(op: () => Promise<unknown>): Promise<number> {
  const before = await settled();
  await op();
  const after = await settled();
  lastSessions = after.sessions - before.sessions;
  return after.commands - before.commands;
}

const report = (what: string, n: number): void => {
  process.stderr.write(`round trips: ${what}: ${n} commands in ${lastSessions} sshd sessions\n`);
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

  it("create, update and delete are two round trips, the host lock riding in the first, from the first create on", async () => {
    const first = await commandsOf(async () => engine.up([await bridge("br-rtt-a")]));
    report("first Bridge create on a new host", first);
    // observe with the lock taken before it, apply with the observation after it (the SSH
    // client's address came with the shell's hello; the release is a frame with no reply)
    expect(first).toBe(2);

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
    report("refresh of a Bridge and a TapDevice (read at once, as the engine does)", refresh);
    // two round trips each, no holder session beside them
    expect([create, update, tapCreate, del]).toEqual([2, 2, 2, 2]);
    // one per read at most: the two reads arrive at once and share one command when they come
    // within the batch's window (the in-process test below asserts the sharing itself)
    expect(refresh).toBeGreaterThanOrEqual(1);
    expect(refresh).toBeLessThanOrEqual(2);
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
    // a new connection of this process: the client's address comes with the shell's hello
    const first = await commandsOf(() => lc.create(news("br-rtt-0")));
    report("first unlocked create of this process", first);
    expect(first).toBe(2);
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

// A native plugin of its own (so a new connection), configured with the lab host's, for `fn`.
async function withNativePlugin(fn: (p: NativeProviderPlugin) => Promise<void>): Promise<void> {
  const fake = await FakeEngine.start();
  const p = await NativeProviderPlugin.start({ engineAddress: fake.address });
  try {
    await p.handshake();
    await p.configure({ connection: h.connection() });
    await fn(p);
  } finally {
    await p.stop();
    fake.stop();
  }
}

/** The preview of a create of bridge `name`, as resource `key`. */
const previewBridge = (p: NativeProviderPlugin, key: string, name: string) =>
  p.create(urnOf("hypervisor:index:Bridge", key), { name }, { preview: true });

describe("a native preview of many resources on one host", () => {
  it("observes them in one command when the engine asks for them at once", async () => {
    await withNativePlugin(async (p) => {
      const preview = (i: number) => previewBridge(p, `b${i}`, `br-rtp-${i}`);
      // a new connection of this plugin: the client's address comes with the shell's hello
      const first = await commandsOf(() => preview(0));
      expect(first).toBe(1);
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
    });
  });

  it("on a new connection, opens one shell for the looks it sends at once", async () => {
    await withNativePlugin(async (p) => {
      // Bridges ask for the session's client address, which the first shell's hello brings:
      // waiting for it, a look that rides in a shared batch starts no shell of its own.
      const ten = await commandsOf(() =>
        Promise.all(Array.from({ length: 10 }, (_, i) => previewBridge(p, `n${i}`, `br-rtn-${i}`))),
      );
      report("ten native previews at once on a new connection", ten);
      expect(ten).toBe(1);
      expect(lastSessions).toBe(1);
    });
  });
});

describe("a native preview through the engine's schedule", () => {
  // Five bridges and a tap on each, every tap depending on its bridge: the engine previews the
  // bridges at once, then the taps at once, a command each when their previews reach the plugin
  // within the batch's window (a busy machine may split them); one after another, ten commands.
  const specs: NativeResourceSpec[] = [0, 1, 2, 3, 4].flatMap((i) => [
    { type: "hypervisor:index:Bridge", name: `b${i}`, inputs: { name: `br-rts-${i}` } },
    {
      type: "hypervisor:index:TapDevice",
      name: `t${i}`,
      inputs: { name: `tap-rts-${i}`, bridge: `br-rts-${i}` },
      dependsOn: [`b${i}`],
    },
  ]);

  it("observes what the engine previews at once together", async () => {
    const native = new NativeEngine();
    try {
      await native.provider("default", { connection: secret(h.connection()) });
      // the first preview opens the connection and its shell
      await native.preview(specs.slice(0, 1));
      const oneByOne = await commandsOf(() => native.preview(specs));
      let levels: Awaited<ReturnType<NativeEngine["preview"]>> | undefined;
      const atOnce = await commandsOf(async () => {
        levels = await native.preview(specs, { atOnce: true });
      });
      report("five bridges and their taps previewed one by one", oneByOne);
      report("the same previewed as the engine schedules them", atOnce);
      expect(oneByOne).toBe(10);
      expect(atOnce).toBeGreaterThanOrEqual(2);
      expect(atOnce).toBeLessThanOrEqual(6);
      expect(levels?.steps.map((s) => `${s.name} ${s.op}`).sort()).toEqual(
        specs.map((s) => `${s.name} create`).sort(),
      );
      const bridge = levels?.steps.find((s) => s.name === "b3");
      expect(bridge?.plannedSteps?.[0]).toMatch(/^create bridge br-rts-3: ip link add/);
    } finally {
      await native.stop();
    }
  });
});
