// 50 operations at once on one host through one plugin process, as the engine runs a wide stack
// with --parallel: one pooled SSH connection (sshd's log counts them), no failed operation, and the
// channel opens sshd refused at its MaxSessions (10) counted from the plugin's warnings.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import { urnOf, type DynamicProviderPlugin } from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";

const N = 50;

let lab: Lab;
let h: LabHost;
let plugin: DynamicProviderPlugin;

beforeAll(async () => {
  lab = await startLab({ name: "abload", hosts: 1 });
  h = lab.hosts[0]!;
  ({ plugin } = await startEngine());
});

afterAll(async () => {
  await plugin?.stop();
  await lab?.stop();
});

const refusals = (): number =>
  plugin
    .stderr()
    .split("\n")
    .filter((l) => l.includes("refused a new session")).length;

async function settle<T>(ops: Array<Promise<T>>): Promise<{ ok: T[]; failed: string[] }> {
  const all = await Promise.allSettled(ops);
  return {
    ok: all.flatMap((r) => (r.status === "fulfilled" ? [r.value] : [])),
    failed: all.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : [])),
  };
}

describe("parallel load", () => {
  it("creates, refreshes and deletes 50 taps at once over one SSH connection", async () => {
    const type = "pulumi-nodejs:dynamic/hypervisor:TapDevice";
    const specs = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        spec("TapDevice", `t${i}`, { connection: h.connection(), name: `hvab-t${i}`, mtu: 1400 }),
      ),
    );
    const checked = await Promise.all(
      specs.map(async (s) => {
        const urn = urnOf(type, s.name);
        const c = await plugin.check(urn, {}, s.inputs);
        expect(c.failures).toEqual([]);
        return { urn, inputs: c.inputs };
      }),
    );
    const before = await h.sshConnectionCount();
    const t0 = Date.now();
    const created = await settle(checked.map((c) => plugin.create(c.urn, c.inputs)));
    const t1 = Date.now();
    const read = await settle(
      created.ok.map((r, i) =>
        plugin.read(r.id, checked[i]!.urn, r.properties, checked[i]!.inputs),
      ),
    );
    const t2 = Date.now();
    const deleted = await settle(
      created.ok.map((r, i) =>
        plugin.delete(r.id, checked[i]!.urn, r.properties, checked[i]!.inputs),
      ),
    );
    const t3 = Date.now();
    const connections = (await h.sshConnectionCount()) - before;
    const failed = [...created.failed, ...read.failed, ...deleted.failed];
    // provider/src/host/channels.ts lowers its limit on a refusal and logs the new one.
    const learned = /at most (\d+) sessions at once/.exec(
      plugin.stderr().split("\n").reverse().join("\n"),
    );
    const left = await h.exec(["sh", "-c", "ls /sys/class/net | grep -c '^hvab-t' || true"]);
    process.stderr.write(
      `parallel load: ${N} creates in ${t1 - t0} ms, ${N} refreshes in ${t2 - t1} ms, ` +
        `${N} deletes in ${t3 - t2} ms; ${connections} SSH connection(s), ${failed.length} failed ` +
        `operations, ${refusals()} channel opens refused by sshd ` +
        `(channel limit learned: ${learned?.[1] ?? "none"})\n`,
    );
    expect(failed).toEqual([]);
    expect(created.ok).toHaveLength(N);
    expect(read.ok.map((r) => r.id)).toEqual(created.ok.map((r) => r.id));
    expect(connections).toBe(1);
    expect(left.stdout.trim()).toBe("0");
    // 8 channels on sshd's MaxSessions 10 were refused 20 times per run before the limit learned.
    expect(refusals()).toBeLessThanOrEqual(10);
  });
});
