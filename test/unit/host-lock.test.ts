import { describe, expect, it } from "vitest";
import { CommandError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { lockKeys, withHostLock } from "../../provider/src/host/lock";

/** A host whose lock holder runs until its session is closed (aborted), or ends as told. */
class LockHost implements Host {
  readonly label: string;
  readonly ran: string[][] = [];
  holders = 0;
  maxHolders = 0;
  holderEnds: RunResult | undefined;
  sessions = 8;

  constructor(label = "root@198.18.1.2:22") {
    this.label = label;
  }

  sessionLimit(): number {
    return this.sessions;
  }

  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push([...req.argv]);
    if (req.argv[3] !== "lock-hold.sh") return { exitCode: 0, stdout: "ok", stderr: "" };
    this.holders++;
    this.maxHolders = Math.max(this.maxHolders, this.holders);
    try {
      if (this.holderEnds) return this.holderEnds;
      return await new Promise<RunResult>((_resolve, reject) => {
        req.signal?.addEventListener("abort", () => reject(new Error("session closed")));
      });
    } finally {
      this.holders--;
    }
  }
}

describe("host lock", () => {
  it("sorts and dedupes keys, and refuses a key that is not a plain name", () => {
    expect(lockKeys(["interface.br0", "DnsmasqInstance.dm", "interface.br0"])).toEqual([
      "DnsmasqInstance.dm",
      "interface.br0",
    ]);
    expect(() => lockKeys(["a/../b"])).toThrow('invalid host lock key "a/../b"');
  });

  it("holds the lock in its own session; the first command waits for it, later ones do not", async () => {
    const host = new LockHost();
    await withHostLock(host, ["Bridge.br0"], undefined, async (h) => {
      await h.run({ argv: ["ip", "link"] });
      await h.run({ argv: ["ip", "addr"] });
    });
    const [hold, first, second] = host.ran;
    expect(hold?.slice(3, 5)).toEqual(["lock-hold.sh", hold?.[4]]);
    expect(hold?.slice(5)).toEqual(["300", "Bridge.br0"]);
    expect(first?.slice(3, 5)).toEqual(["lock-wait.sh", hold?.[4]]);
    expect(first?.slice(5)).toEqual(["300", "ip", "link"]);
    expect(second).toEqual(["ip", "addr"]);
    expect(host.holders).toBe(0); // released: its session closed
  });

  it("fails the operation when the holder ends before it (a lock not taken)", async () => {
    const host = new LockHost();
    host.holderEnds = {
      exitCode: 1,
      stdout: "",
      stderr: "timed out after 300 s waiting for the host lock on interface.br0\n",
    };
    const err = await withHostLock(host, ["interface.br0"], undefined, async (h) => {
      await new Promise((r) => setTimeout(r, 10));
      return h.run({ argv: ["true"] });
    }).catch((e: unknown) => e);
    expect(err).toEqual(
      new Error("host lock: timed out after 300 s waiting for the host lock on interface.br0"),
    );
  });

  it("a failing first command is named by its own argv, not the lock wrapper", async () => {
    const host = new LockHost();
    const failing: Host = {
      label: host.label,
      run: async (req) => {
        if (req.argv[3] === "lock-wait.sh") {
          throw new CommandError(host.label, req.argv, { exitCode: 2, stdout: "", stderr: "no" });
        }
        return host.run(req);
      },
    };
    const err = await withHostLock(failing, ["Bridge.br0"], undefined, (h) =>
      h.run({ argv: ["ip", "link", "show", "br0"] }),
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe("root@198.18.1.2:22: ip link show br0 exited 2: no");
  });

  it("runs unlocked when the host cannot lock (exit 3)", async () => {
    const host = new LockHost();
    host.holderEnds = { exitCode: 3, stdout: "", stderr: "no host lock: flock is not installed" };
    const r = await withHostLock(host, ["Bridge.br0"], undefined, async (h) => {
      await new Promise((r) => setTimeout(r, 10));
      return h.run({ argv: ["true"] });
    });
    expect(r.stdout).toBe("ok");
  });

  it("keeps half of a connection's sessions free of holders, so 20 parallel operations finish", async () => {
    const host = new LockHost();
    const ops = Array.from({ length: 20 }, (_, i) =>
      withHostLock(host, [`Bridge.br${i}`], undefined, async (h) => {
        await new Promise((r) => setTimeout(r, 5));
        return (await h.run({ argv: ["true"] })).stdout;
      }),
    );
    expect(await Promise.all(ops)).toEqual(Array.from({ length: 20 }, () => "ok"));
    expect(host.maxHolders).toBe(4);
  });

  it("holds fewer locks when sshd accepts fewer sessions, none below 2", async () => {
    for (const [sessions, holders] of [
      [3, 1],
      [1, 0],
    ] as const) {
      const host = new LockHost(`root@198.18.1.${sessions}:22`);
      host.sessions = sessions;
      const ops = Array.from({ length: 6 }, (_, i) =>
        withHostLock(host, [`Bridge.br${i}`], undefined, async (h) => {
          await new Promise((r) => setTimeout(r, 5));
          return (await h.run({ argv: ["true"] })).stdout;
        }),
      );
      expect(await Promise.all(ops)).toEqual(Array.from({ length: 6 }, () => "ok"));
      expect(host.maxHolders).toBe(holders);
    }
  });
});
