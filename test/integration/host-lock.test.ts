// The host lock on a lab host's real sshd, held the way the pooled connection holds it: taken by
// an operation's first command in a remote shell (lock-take.sh), released by a one-way frame, and
// gone with the connection. Two connections stand for two provider processes (stacks): within one
// process, operations on the same keys already queue before the host.
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import { Connection } from "../../provider/src/host/connection";
import { withHostLock } from "../../provider/src/host/lock";
import { scriptArgv, scriptIn } from "../../provider/src/host/script";
import { SshHost } from "../../provider/src/host/ssh-host";

let lab: Lab;
let h: LabHost;
const opened: SshHost[] = [];

beforeAll(async () => {
  lab = await startLab({ name: "hlock", hosts: 1 });
  h = lab.hosts[0]!;
});

afterAll(async () => {
  for (const host of opened) await host.close();
  await lab?.stop();
});

/** A connection of its own: another provider process, as far as the host can tell. */
function process2(): SshHost {
  const host = new SshHost(Connection.parse(h.connection()));
  opened.push(host);
  return host;
}

const sessions = async (): Promise<number> =>
  (await readFile(h.sshdLogPath, "utf8")).split("\n").filter((l) => /\bStarting session: /.test(l))
    .length;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Whether the lock on `key` is free now, asked on the host with a non-blocking flock.
async function free(key: string): Promise<boolean> {
  const r = await h.exec([
    "sh",
    "-c",
    'exec 3>>"/run/pulumi-hypervisor/locks/$1.lock" && flock -n 3',
    "sh",
    key,
  ]);
  return r.code === 0;
}

async function until(what: string, ok: () => Promise<boolean>, ms = 5000): Promise<number> {
  const start = Date.now();
  while (!(await ok())) {
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
  return Date.now() - start;
}

describe("host lock held in remote shells", () => {
  it("makes another process's operation on the same key wait until the release, with no holder session", async () => {
    const a = process2();
    const b = process2();
    await a.run({ argv: ["true"] });
    await b.run({ argv: ["true"] });
    const before = await sessions();
    const events: string[] = [];
    let aOut = 0;
    let bIn = 0;
    const opA = withHostLock(a, ["Bridge.lk0"], undefined, async (host) => {
      await host.run({ argv: ["true"] });
      events.push("a in");
      await sleep(600);
      // a later command of the operation checks the lock is still held
      expect((await host.run({ argv: ["echo", "still"] })).stdout).toBe("still\n");
      events.push("a out");
      aOut = Date.now();
    });
    await until("a holds the lock", async () => events.includes("a in"));
    expect(await free("Bridge.lk0")).toBe(false);
    const opB = withHostLock(b, ["Bridge.lk0"], undefined, async (host) => {
      await host.run({ argv: ["true"] });
      bIn = Date.now();
      events.push("b in");
    });
    await Promise.all([opA, opB]);
    expect(events).toEqual(["a in", "a out", "b in"]);
    process.stderr.write(`host lock: handed over ${bIn - aOut} ms after the release\n`);
    expect(bIn - aOut).toBeLessThan(2000);
    // released by a frame: free without another command of either process
    await until("the lock is free after both", () => free("Bridge.lk0"));
    // no session besides the two connections' shells (already open)
    expect((await sessions()) - before).toBe(0);
    const left = await h.exec([
      "sh",
      "-c",
      // no file of an operation, and no key that still names a holder
      "cd /run/pulumi-hypervisor/locks && { ls | grep '^op\\.'; find . -name '*.since' ! -empty; } || true",
    ]);
    expect(left.stdout).toBe("");
  });

  it("releases the lock when the provider's connection drops mid-operation", async () => {
    const a = process2();
    let took!: () => void;
    const taken = new Promise<void>((r) => (took = r));
    const opA = withHostLock(a, ["Bridge.lk1"], undefined, async (host) => {
      await host.run({ argv: ["true"] });
      took();
      await sleep(60_000);
    });
    opA.catch(() => undefined);
    await taken;
    expect(await free("Bridge.lk1")).toBe(false);
    await a.close();
    const ms = await until("the lock goes with the connection", () => free("Bridge.lk1"));
    process.stderr.write(`host lock: free ${ms} ms after the connection closed\n`);
  });

  it("fails a later command whose lock is gone instead of running it unlocked", async () => {
    const a = process2();
    const err = await withHostLock(a, ["Bridge.lk2"], undefined, async (host) => {
      await host.run({ argv: ["true"] });
      // what a holder that ended leaves: its first key's .since emptied
      await h.exec(["sh", "-c", ": >/run/pulumi-hypervisor/locks/Bridge.lk2.since"]);
      return host.run({ argv: ["touch", "/tmp/ran-unlocked"] });
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "host lock: lost before this command (the connection that took it closed, or its holder was killed)",
    );
    expect((await h.exec(["test", "-e", "/tmp/ran-unlocked"])).code).not.toBe(0);
    await until("the lock is free after the failed operation", () => free("Bridge.lk2"));
  });

  it("times out with the holder named when another process keeps the key", async () => {
    const a = process2();
    const b = process2();
    let took!: () => void;
    const taken = new Promise<void>((r) => (took = r));
    let done!: () => void;
    const opA = withHostLock(a, ["Bridge.lk3"], undefined, async (host) => {
      await host.run({ argv: ["true"] });
      took();
      await new Promise<void>((r) => (done = r));
    });
    await taken;
    // lock-take.sh with a wait of 1 s instead of 300, in b's shell
    const take = scriptIn(path.join(__dirname, "../../provider/src/host"), "lock-take.sh", [
      "00ff00ff00ff00ff",
      "1",
      "Bridge.lk3",
      "--",
      "touch",
      "/tmp/ran-without-lock",
    ]);
    const r = await b.run({ argv: scriptArgv(take), reject: false });
    expect(r, JSON.stringify(r)).toMatchObject({ exitCode: 125 });
    expect(r.stderr).toMatch(
      /^host lock: timed out after 1 s waiting for the host lock on Bridge\.lk3 \(holder since, operation, pid, connection, keys: \d\d:\d\d:\d\d [0-9a-f]{16} \d+ \d+ Bridge\.lk3\)\n$/,
    );
    expect((await h.exec(["test", "-e", "/tmp/ran-without-lock"])).code).not.toBe(0);
    done();
    await opA;
    await until("free after a", () => free("Bridge.lk3"));
  });
});
