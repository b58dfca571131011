import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CommandError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult, ShellLockHold } from "../../provider/src/host/host";
import { lockKeys, withHostLock } from "../../provider/src/host/lock";
import { scriptBody } from "../../provider/src/host/script";
import { LOCKS, lockHeld } from "../support/host-locks";

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

/** A host whose commands run in remote shells: the first command of an operation takes the lock. */
class ShellLockHost extends LockHost {
  readonly released: string[] = [];
  takeEnds: RunResult | undefined;
  inShell = true;

  holds = 0;

  shellLock(): ShellLockHold | undefined {
    if (!this.inShell) return undefined;
    this.holds++;
    return {
      release: (token) => {
        this.holds--;
        if (token !== undefined) this.released.push(token);
      },
    };
  }

  /** The lock token each command asked the shell to release after it ("" for none). */
  readonly releasedAfter: string[] = [];
  /** Whether the shell does release what a request names (false: a session of its own ran it). */
  releasesAfter = true;

  override async run(req: RunRequest): Promise<RunResult> {
    this.releasedAfter.push(req.releasesHostLock ?? "");
    if (req.argv[3] === "lock-take.sh" && this.takeEnds) {
      this.ran.push([...req.argv]);
      return this.takeEnds;
    }
    const r = await super.run(req);
    return req.releasesHostLock !== undefined && this.releasesAfter
      ? { ...r, hostLockReleased: true }
      : r;
  }
}

describe("host lock in a remote shell", () => {
  it("rides in the first command, checks it before the later ones, and releases it one-way", async () => {
    const host = new ShellLockHost();
    await withHostLock(host, ["interface.br0", "Bridge.br0"], undefined, async (h) => {
      await h.run({ argv: ["ip", "link"] });
      await h.run({ argv: ["ip", "addr"] });
    });
    const [take, check] = host.ran;
    expect(host.ran).toHaveLength(2);
    const token = take?.[4] ?? "";
    expect(token).toMatch(/^[0-9a-f]{16}$/);
    expect(take?.slice(3)).toEqual([
      "lock-take.sh",
      token,
      "300",
      "Bridge.br0",
      "interface.br0",
      "--",
      "ip",
      "link",
    ]);
    // later commands and the release name the lock by its token and first key, whose fifo the
    // holder reads
    expect(check?.slice(3)).toEqual(["lock-check.sh", `${token}/Bridge.br0`, "ip", "addr"]);
    expect(host.released).toEqual([`${token}/Bridge.br0`]);
    expect(host.holds).toBe(0);
    expect(host.maxHolders).toBe(0); // no session held a lock
  });

  it("has the operation's last command release the lock in the shell, with no frame after it", async () => {
    const host = new ShellLockHost();
    await withHostLock(host, ["Bridge.br0"], undefined, async (h) => {
      await h.run({ argv: ["ip", "link"], endsOperation: true });
      await h.run({ argv: ["ip", "addr"] });
      await h.run({ argv: ["ip", "route"], endsOperation: true });
    });
    const token = host.ran[0]?.[4] ?? "";
    // never with the first command, which starts the holder: a later one that ends the operation
    expect(host.releasedAfter).toEqual(["", "", `${token}/Bridge.br0`]);
    expect(host.released).toEqual([]);
    expect(host.holds).toBe(0);
  });

  it("still sends the release frame when the last command's shell did not release", async () => {
    const host = new ShellLockHost();
    host.releasesAfter = false;
    await withHostLock(host, ["Bridge.br0"], undefined, async (h) => {
      await h.run({ argv: ["ip", "link"] });
      await h.run({ argv: ["ip", "addr"], endsOperation: true });
    });
    const lock = `${host.ran[0]?.[4] ?? ""}/Bridge.br0`;
    expect(host.releasedAfter).toEqual(["", lock]);
    expect(host.released).toEqual([lock]);
  });

  it("fails with the host's words when the lock was not taken, and releases nothing held", async () => {
    const host = new ShellLockHost();
    host.takeEnds = {
      exitCode: 125,
      stdout: "",
      stderr: "host lock: timed out after 300 s waiting for the host lock on Bridge.br0\n",
    };
    const err = await withHostLock(host, ["Bridge.br0"], undefined, (h) =>
      h.run({ argv: ["true"] }),
    ).catch((e: unknown) => e);
    expect(err).toEqual(
      new Error("host lock: timed out after 300 s waiting for the host lock on Bridge.br0"),
    );
  });

  it("names the first command, not the wrapper, when it fails; its own exit 125 stays its own", async () => {
    const host = new ShellLockHost();
    host.takeEnds = { exitCode: 125, stdout: "", stderr: "no such device" };
    const err = await withHostLock(host, ["Bridge.br0"], undefined, (h) =>
      h.run({ argv: ["ip", "link", "show", "br0"] }),
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "root@198.18.1.2:22: ip link show br0 exited 125: no such device",
    );
    const probe = await withHostLock(host, ["Bridge.br0"], undefined, (h) =>
      h.run({ argv: ["probe"], reject: false }),
    );
    expect(probe.exitCode).toBe(125);
  });

  it("falls back to a holder session when the command did not run in a shell (exit 124)", async () => {
    const host = new ShellLockHost();
    host.takeEnds = { exitCode: 124, stdout: "", stderr: "host lock: not in a remote shell\n" };
    const r = await withHostLock(host, ["Bridge.br0"], undefined, async (h) => {
      const first = await h.run({ argv: ["ip", "link"] });
      await h.run({ argv: ["ip", "addr"] });
      return first;
    });
    expect(r.stdout).toBe("ok");
    const names = host.ran.map((a) => (a[0] === "sh" ? a[3] : a[0]));
    expect(names).toEqual(["lock-take.sh", "lock-hold.sh", "lock-wait.sh", "ip"]);
    expect(host.holders).toBe(0);
    expect(host.released).toEqual([]);
  });

  it("queues operations of one process on the same key before the host, others run at once", async () => {
    const host = new ShellLockHost();
    const order: string[] = [];
    const op = (key: string, tag: string, ms: number) =>
      withHostLock(host, [key], undefined, async (h) => {
        order.push(`${tag} in`);
        await h.run({ argv: ["true"] });
        await new Promise((r) => setTimeout(r, ms));
        order.push(`${tag} out`);
      });
    await Promise.all([
      op("Bridge.br0", "a", 30),
      op("Bridge.br0", "b", 1),
      op("Bridge.br1", "c", 1),
    ]);
    expect(order).toEqual(["a in", "c in", "c out", "a out", "b in", "b out"]);
    // every operation took the lock on the host: the queue is only in front of it
    expect(host.ran.filter((a) => a[3] === "lock-take.sh")).toHaveLength(3);
  });

  it("an aborted wait in the queue leaves it, and the next one still gets its turn", async () => {
    const host = new ShellLockHost();
    let release!: () => void;
    const first = withHostLock(
      host,
      ["Bridge.br0"],
      undefined,
      () => new Promise<void>((r) => (release = r)),
    );
    await new Promise((r) => setTimeout(r, 5));
    const stop = new AbortController();
    const waiting = withHostLock(host, ["Bridge.br0"], stop.signal, async () => "ran");
    const third = withHostLock(host, ["Bridge.br0"], undefined, async () => "third");
    stop.abort(new Error("cancelled"));
    await expect(waiting).rejects.toThrow("cancelled");
    release();
    await first;
    expect(await third).toBe("third");
  });
});

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

describe("lock-take.sh on this machine's shell", () => {
  // the files of the test's keys (they stay, like every key's): removed at the end
  afterAll(() => {
    for (const f of readdirSync(LOCKS)) if (f.startsWith("Test.")) rmSync(join(LOCKS, f));
  });
  const sh = (script: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync("sh", ["-c", scriptBody(script), script.replace(/.*\//, ""), ...args], {
      env: { ...process.env, ...env },
      encoding: "utf8",
    });

  it("holds until its own token comes through the fifo, and names itself to later commands", async () => {
    mkdirSync(LOCKS, { recursive: true });
    const token = randomBytes(8).toString("hex");
    const key = `Test.${token}`;
    const other = `Test.${token}.other`;
    // the connection's sshd, as the holder's watcher sees it: a process that outlives the test
    const anchor = spawn("sleep", ["60"]);
    const gone = async (k: string): Promise<boolean> => {
      for (let i = 0; i < 40 && lockHeld(k); i++) await new Promise((d) => setTimeout(d, 50));
      return !lockHeld(k);
    };
    try {
      const take = sh("host/lock-take.sh", [token, "5", key, other, "--", "echo", "first"], {
        PULUMI_HYPERVISOR_SHELL_ANCHOR: String(anchor.pid),
      });
      expect(take).toMatchObject({ status: 0, stdout: "first\n" });
      expect(lockHeld(key) && lockHeld(other)).toBe(true);
      // both keys name the holder: its token and pid, and the keys it holds
      const since = readFileSync(join(LOCKS, `${other}.since`), "utf8");
      expect(since).toMatch(new RegExp(`^${token} \\d+ ${anchor.pid} ${key} ${other}\n$`));
      const check = (ref: string) => sh("host/lock-check.sh", [ref, "echo", "later"]);
      expect(check(`${token}/${key}`)).toMatchObject({ status: 0, stdout: "later\n" });
      expect(check(`0000/${key}`).status).toBe(125);
      // a late release of an earlier operation on the same key is skipped
      sh("host/lock-release.sh", [`0123456789abcdef/${key}`]);
      await new Promise((d) => setTimeout(d, 300));
      expect(lockHeld(key)).toBe(true);
      sh("host/lock-release.sh", [`${token}/${key}`]);
      expect(await gone(key)).toBe(true);
      expect(lockHeld(other)).toBe(false);
      // the files stay for the next holder, emptied: no rm on the way out
      expect(readFileSync(join(LOCKS, `${key}.since`), "utf8")).toBe("");
      expect(check(`${token}/${key}`).status).toBe(125);
    } finally {
      anchor.kill();
    }
  });

  it("makes the release fifo and asks again when the shell's perl cannot make it", async () => {
    mkdirSync(LOCKS, { recursive: true });
    const key = `Test.${randomBytes(8).toString("hex")}`;
    const dir = mkdtempSync(join(tmpdir(), "perl-ask-"));
    expect(
      spawnSync(
        "mkfifo",
        ["kq", "ka", "kt"].map((f) => join(dir, f)),
      ).status,
    ).toBe(0);
    // the loop's perl as lock-take.sh sees it (perl-ask.sh): answers "fifo" first (a host where
    // perl has no mknodat), "ok" next, and says whether the fifo was there at each question
    const peer = spawn("perl", [
      "-e",
      `open(Q, "+<", "$ARGV[0]q") or die; open(A, "+<", "$ARGV[0]a") or die;
       open(T, "+<", "$ARGV[0]t") or die; syswrite(T, "\n"); $| = 1; print "ready\n";
       my $n = 0;
       while (<Q>) {
         my ($id, $verb, $t, $w, @k) = split / /, substr($_, 0, -1);
         print ++$n, " $verb ", (-p "$ARGV[1]/$k[0].rel" ? "fifo" : "none"), "\n";
         syswrite(A, "\n=$id\n" . ($n == 1 ? "fifo" : "ok") . "\n\n");
       }`,
      join(dir, "k"),
      LOCKS,
    ]);
    let said = "";
    peer.stdout.on("data", (b: Buffer) => (said += b.toString()));
    try {
      for (let i = 0; i < 100 && !said.includes("ready"); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const take = sh("host/lock-take.sh", ["00ff00ff00ff00ff", "5", key, "--", "echo", "ran"], {
        PULUMI_HYPERVISOR_SHELL_ANCHOR: String(process.pid),
        PULUMI_HYPERVISOR_PERL: `${join(dir, "k")}:${peer.pid}:7`,
      });
      expect(take).toMatchObject({ status: 0, stdout: "ran\n", stderr: "" });
      // its lines come as events, which the synchronous run above held back
      for (let i = 0; i < 100 && !said.includes("2 "); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(said).toBe("ready\n1 !lock none\n2 !lock fifo\n");
      expect(statSync(join(LOCKS, `${key}.rel`)).isFIFO()).toBe(true);
    } finally {
      peer.kill();
      rmSync(dir, { recursive: true, force: true });
      for (const ext of ["lock", "since", "rel"])
        rmSync(join(LOCKS, `${key}.${ext}`), { force: true });
    }
  });

  it("ends every holder of a connection once its sshd is gone, with one watcher for them", async () => {
    mkdirSync(LOCKS, { recursive: true });
    const anchor = spawn("sleep", ["60"]);
    const keys = [1, 2].map(() => `Test.${randomBytes(8).toString("hex")}`);
    const take = (key: string) =>
      sh("host/lock-take.sh", [randomBytes(8).toString("hex"), "5", key, "--", "true"], {
        PULUMI_HYPERVISOR_SHELL_ANCHOR: String(anchor.pid),
      });
    const marker = join(LOCKS, `w.${anchor.pid}`);
    expect(take(keys[0]!).status).toBe(0);
    const watcher = readFileSync(marker, "utf8");
    expect(take(keys[1]!).status).toBe(0);
    // the second lock found the connection's watcher alive and started none
    expect(readFileSync(marker, "utf8")).toBe(watcher);
    expect(keys.map(lockHeld)).toEqual([true, true]);
    anchor.kill();
    for (let i = 0; i < 60 && keys.some(lockHeld); i++) await new Promise((d) => setTimeout(d, 50));
    expect(keys.map(lockHeld)).toEqual([false, false]);
    for (let i = 0; i < 20 && existsSync(marker); i++) await new Promise((d) => setTimeout(d, 50));
    expect(existsSync(marker)).toBe(false);
  });
});
