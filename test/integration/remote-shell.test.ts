// The remote shell on a lab host's real sshd (LogLevel VERBOSE logs "Starting session" per
// session): many commands in one session, several shells for parallel commands below MaxSessions,
// a killed loop replaced, deadlines and aborts that kill the command and keep the shell, the
// fallback for a user whose loop cannot start, and sudo with a password asked once per shell.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LAB_USERS, startLab, type Lab, type LabHost } from "../../lab";
import { CommandDeadlineError } from "../../provider/src/errors";
import { Connection } from "../../provider/src/host/connection";
import type { Host } from "../../provider/src/host/host";
import { withHostLock } from "../../provider/src/host/lock";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { REMOTE_SHELL_ENV } from "../../provider/src/host/remote-shell";
import { startRelay } from "../../bench/relay";

let lab: Lab;
let h: LabHost;

beforeAll(async () => {
  lab = await startLab({ name: "itrsh", hosts: 1 });
  h = lab.hosts[0]!;
});

afterAll(async () => {
  await closeAllHosts();
  await lab?.stop();
});

const sessions = async (): Promise<number> =>
  (await readFile(h.sshdLogPath, "utf8")).split("\n").filter((l) => /\bStarting session: /.test(l))
    .length;

async function sh(script: string): Promise<string> {
  const r = await h.exec(["sh", "-c", script]);
  expect(r.code, `${script}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

// The loop whose shell runs the command.
async function loopPid(host: Host): Promise<number> {
  // the request's `exec` replaces the subshell, so the command's parent is the loop itself
  const r = await host.run({
    argv: ["sh", "-c", 'grep -q remote-shell.sh /proc/$PPID/cmdline && echo "$PPID"'],
  });
  return Number(r.stdout);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof Error)) throw new Error("expected a rejection with an error");
  return e;
}

// Captures this process's stderr (where logInfo writes) for the duration of fn.
async function withStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const spy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const result = await fn();
    return { result, stderr: spy.mock.calls.map((c) => String(c[0])).join("") };
  } finally {
    spy.mockRestore();
  }
}

const processes = async (args: string): Promise<number> =>
  Number((await sh(`ps -eo args | grep -c '^${args}$' || true`)).trim());

describe("remote shell on a lab host", () => {
  it("runs 40 commands in one session and counts each request in the trace file", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    await sh("mkdir -p /run/pulumi-hypervisor && : > /run/pulumi-hypervisor/trace-requests");
    const before = await sessions();
    try {
      for (let i = 0; i < 40; i++) {
        expect((await host.run({ argv: ["echo", String(i)] })).stdout).toBe(`${i}\n`);
      }
      expect((await host.run({ argv: ["wc", "-c"], stdin: "12345" })).stdout.trim()).toBe("5");
      expect((await sessions()) - before).toBe(1);
    } finally {
      await closeAllHosts();
    }
    const trace = (
      await sh(
        "cat /run/pulumi-hypervisor/trace-requests; rm -f /run/pulumi-hypervisor/trace-requests",
      )
    )
      .trimEnd()
      .split("\n");
    // the shell's start, then a line per request
    expect(trace).toHaveLength(42);
    expect(trace[0]).toMatch(/^\d+\.\d\d shell$/);
    for (const line of trace.slice(1)) expect(line).toMatch(/^\d+\.\d\d \d+ \d+ \d+$/);
    // "echo 0": `exec echo 0` is 11 bytes, no stdin, exit code 0
    expect(trace[1]?.split(" ").slice(1)).toEqual(["11", "0", "0"]);
    expect(trace[41]?.split(" ").slice(1)).toEqual(["10", "5", "0"]);
  });

  it("runs parallel commands in several shells, all sessions but two, below sshd's MaxSessions", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    const before = await sessions();
    try {
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          host.run({ argv: ["sh", "-c", 'sleep 0.3; echo "$1"', "sh", String(i)] }),
        ),
      );
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 24 }, (_, i) => `${i}\n`));
      const used = (await sessions()) - before;
      // of the 8 sessions a connection uses, two stay free for a session of its own
      expect(used).toBe(6);
    } finally {
      await closeAllHosts();
    }
  });

  it("starts the shells of operations that wait for the client's address while the first starts", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    const before = await sessions();
    try {
      // the first call starts the shell whose hello has $SSH_CONNECTION; the three others would
      // each start their own shell only after it, for their first command
      const ask = host.sessionClientAddress?.bind(host);
      if (!ask) throw new Error("a pooled host asks for the client's address");
      const asked = await Promise.all(Array.from({ length: 4 }, () => ask()));
      expect(asked).toEqual(Array(4).fill(h.controllerAddress));
      // the three others are already starting: no command asked for them
      for (let i = 0; i < 100 && (await sessions()) - before < 4; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await sessions()) - before).toBe(4);
      // and they serve the operations' commands: no fifth session
      await Promise.all(Array.from({ length: 4 }, () => host.run({ argv: ["true"] })));
      expect((await sessions()) - before).toBe(4);
    } finally {
      await closeAllHosts();
    }
  });

  it("keeps a loop's files on tmpfs, in a directory only its user can enter", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    try {
      const r = await host.run({
        argv: [
          "sh",
          "-c",
          'd=${PULUMI_HYPERVISOR_SCRIPTS%/s}; echo "$d"; stat -f -c %T "$d"; stat -c %a "$d"',
        ],
      });
      // not the lab host's /tmp, which is on disk like Debian's: ext4 flushes a file emptied and
      // written again when it is closed, and every request empties four
      const [dir, fs, mode] = r.stdout.trim().split("\n");
      expect(dir).toMatch(/^\/dev\/shm\/tmp\.[A-Za-z0-9]+$/);
      expect(fs).toBe("tmpfs");
      expect(mode).toBe("700");
    } finally {
      await closeAllHosts();
    }
  });

  it("replaces a loop killed on the host, and the next command succeeds", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    try {
      const first = await loopPid(host);
      const before = await sessions();
      await sh(`kill -KILL ${first}`);
      const second = await loopPid(host);
      expect(second).not.toBe(first);
      expect((await sessions()) - before).toBe(1);
    } finally {
      await closeAllHosts();
    }
  });

  it("kills a hanging command at its deadline with a clear error; the shell runs the next", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    try {
      await host.run({ argv: ["true"] });
      const before = await sessions();
      const t0 = Date.now();
      const err = await rejection(
        host.run({ argv: ["sh", "-c", "sleep 3141 & sleep 3141"], deadlineMs: 1000 }),
      );
      const ms = Date.now() - t0;
      expect(err).toBeInstanceOf(CommandDeadlineError);
      expect(err.message).toBe(
        `${host.label}: sh -c 'sleep 3141 & sleep 3141' did not finish within 1 s and was killed`,
      );
      expect(ms).toBeLessThan(4000);
      expect(await processes("sleep 3141")).toBe(0);
      expect((await host.run({ argv: ["echo", "next"] })).stdout).toBe("next\n");
      expect((await sessions()) - before).toBe(0);
    } finally {
      await closeAllHosts();
    }
  });

  it("stops an aborted command and what it started; the shell runs the next", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    try {
      await host.run({ argv: ["true"] });
      const before = await sessions();
      const stop = new AbortController();
      const running = rejection(
        host.run({ argv: ["sh", "-c", "sleep 2718 & sleep 2718"], signal: stop.signal }),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      stop.abort(new Error("cancelled by the engine"));
      expect((await running).message).toBe("cancelled by the engine");
      expect(await processes("sleep 2718")).toBe(0);
      expect((await host.run({ argv: ["echo", "next"] })).stdout).toBe("next\n");
      expect((await sessions()) - before).toBe(0);
    } finally {
      await closeAllHosts();
    }
  });

  // Makes a lab user who logs in with the lab's key (and `shell`, if given).
  async function labUser(name: string, shell = "/bin/bash"): Promise<void> {
    await sh(
      `id ${name} >/dev/null 2>&1 || useradd -M -d /home/${name} -s ${shell} -p '*' ${name}; ` +
        `mkdir -p /home/${name}/.ssh && cp /root/.ssh/authorized_keys /home/${name}/.ssh/ && ` +
        `chown -R ${name}:${name} /home/${name} && chmod 700 /home/${name}/.ssh`,
    );
  }

  // Runs `argv` three times on a host whose loop cannot start: their output, the log lines that
  // say so, and the sessions they took (the failed shell, then a session per command).
  async function withoutShell(
    host: Host,
    argv: string[],
  ): Promise<{ out: string[]; said: string[]; sessions: number }> {
    const before = await sessions();
    try {
      const { result, stderr } = await withStderr(async () => {
        const out: string[] = [];
        for (let i = 0; i < 3; i++) out.push((await host.run({ argv })).stdout);
        return out;
      });
      const said = stderr.split("\n").filter((l) => l.includes("remote shell did not start"));
      return { out: result, said, sessions: (await sessions()) - before };
    } finally {
      await closeAllHosts();
    }
  }

  it("falls back to a session per command for a user whose sudo allows env but not sh", async () => {
    await labUser("hvenv");
    await sh(
      "printf 'hvenv ALL=(ALL:ALL) NOPASSWD: /usr/bin/env\\n' > /etc/sudoers.d/hvenv && " +
        "chmod 440 /etc/sudoers.d/hvenv",
    );
    const host = hostFor(Connection.parse({ ...h.connection("hvenv"), sudo: true }));
    const { out, said, sessions: used } = await withoutShell(host, ["id", "-u"]);
    expect(out).toEqual(["0\n", "0\n", "0\n"]);
    expect(said).toHaveLength(1);
    expect(used).toBe(4);
  });

  it("falls back to a session per command when the loop cannot set up, its log line saying why", async () => {
    // a login shell that points TMPDIR at a missing directory: the loop's mktemp fails
    await sh(
      "printf '#!/bin/sh\\nTMPDIR=/nonexistent-hv exec /bin/sh \"$@\"\\n' > /usr/local/bin/hv-notmp-sh && " +
        "chmod 755 /usr/local/bin/hv-notmp-sh",
    );
    await labUser("hvnotmp", "/usr/local/bin/hv-notmp-sh");
    const host = hostFor(Connection.parse(h.connection("hvnotmp")));
    const { out, said, sessions: used } = await withoutShell(host, ["id", "-un"]);
    expect(out).toEqual(["hvnotmp\n", "hvnotmp\n", "hvnotmp\n"]);
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("exited 3: remote-shell.sh: no private directory (mktemp -d failed)");
    expect(used).toBe(4);
  });

  it("asks for the sudo password once per shell, keeps it out of every host file", async () => {
    const secret = LAB_USERS.passwordSecret;
    const host = hostFor(
      Connection.parse({ ...h.connection(LAB_USERS.password), sudo: { password: secret } }),
    );
    const before = await sessions();
    try {
      for (let i = 0; i < 10; i++) {
        expect((await host.run({ argv: ["id", "-u"] })).stdout).toBe("0\n");
      }
      expect((await host.run({ argv: ["cat"], stdin: "payload" })).stdout).toBe("payload");
      // $SSH_CONNECTION came from the login before sudo, in the shell's hello: no extra session
      expect(await host.sessionClientAddress?.()).toBe(h.controllerAddress);
      expect((await sessions()) - before).toBe(1);
      // the anchor of host locks taken under sudo is the connection's sshd, above sudo
      const anchor = await host.run({
        argv: ["sh", "-c", 'cat /proc/"$PULUMI_HYPERVISOR_SHELL_ANCHOR"/comm'],
      });
      expect(anchor.stdout).toMatch(/^sshd/);
      const locked = await withHostLock(host, ["Bridge.sudo0"], undefined, async (l) => {
        await l.run({ argv: ["true"] });
        return (await l.run({ argv: ["id", "-u"] })).stdout;
      });
      expect(locked).toBe("0\n");
      // while the shell is up, with its private directory in place
      const found = await h.exec([
        "sh",
        "-c",
        'grep -rlF -- "$1" /tmp /var/tmp /dev/shm /run /home /root 2>/dev/null || true',
        "sh",
        secret,
      ]);
      expect(found.stdout).toBe("");
    } finally {
      await closeAllHosts();
    }
  });
});

describe("compression", () => {
  // What the host sends for one command printing about 230 KB of text, counted by a relay between the
  // provider and sshd (the bytes on the wire), without and with `compression: true`.
  async function bytesFromHost(compression: boolean): Promise<{ bytes: number; out: string }> {
    const relay = await startRelay({ targetHost: h.address, targetPort: h.port, delayMs: 0 });
    try {
      const conn = Connection.parse({
        ...h.connection(),
        host: relay.host,
        port: relay.port,
        ...(compression ? { compression: true } : {}),
      });
      const host = hostFor(conn);
      await host.run({ argv: ["true"] });
      const before = relay.bytes().fromTarget;
      const r = await host.run({
        argv: [
          "sh",
          "-c",
          'i=0; while [ $i -lt 10000 ]; do echo "line $i of the reply"; i=$((i+1)); done',
        ],
      });
      return { bytes: relay.bytes().fromTarget - before, out: r.stdout };
    } finally {
      await closeAllHosts();
      await relay.close();
    }
  }

  it("with compression: true the host's reply crosses the link in a fraction of its bytes, unchanged", async () => {
    const plain = await bytesFromHost(false);
    const packed = await bytesFromHost(true);
    expect(plain.out.length).toBeGreaterThan(200_000);
    expect(packed.out).toBe(plain.out);
    expect(plain.bytes).toBeGreaterThan(plain.out.length);
    expect(packed.bytes).toBeLessThan(plain.bytes / 5);
  });
});

describe("what a command costs", () => {
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] ?? NaN;
  };

  async function timed(run: () => Promise<unknown>): Promise<number> {
    const out: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = process.hrtime.bigint();
      await run();
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return median(out);
  }

  // A bare `true`, median of 20: pooled in a remote shell, pooled on a session of its own, and on
  // a new connection (the dead-man's proof of a login, and what @pulumi/command pays each time).
  async function measure(
    conn: Connection,
  ): Promise<{ shell: number; exec: number; fresh: number }> {
    const saved = process.env[REMOTE_SHELL_ENV];
    try {
      process.env[REMOTE_SHELL_ENV] = "on";
      const viaShell = hostFor(conn);
      await viaShell.run({ argv: ["true"] });
      const shell = await timed(() => viaShell.run({ argv: ["true"] }));
      const fresh = await timed(() => viaShell.runFresh!({ argv: ["true"] }));
      await closeAllHosts();
      process.env[REMOTE_SHELL_ENV] = "off";
      const viaExec = hostFor(conn);
      await viaExec.run({ argv: ["true"] });
      const exec = await timed(() => viaExec.run({ argv: ["true"] }));
      return { shell, exec, fresh };
    } finally {
      await closeAllHosts();
      if (saved === undefined) delete process.env[REMOTE_SHELL_ENV];
      else process.env[REMOTE_SHELL_ENV] = saved;
    }
  }

  it("a bare true through the shell beats a session of its own, at 0 ms and at a 20 ms round trip", async () => {
    const direct = await measure(Connection.parse(h.connection()));
    const relay = await startRelay({ targetHost: h.address, targetPort: h.port, delayMs: 10 });
    let far: { shell: number; exec: number; fresh: number };
    try {
      far = await measure(
        Connection.parse({ ...h.connection(), host: relay.host, port: relay.port }),
      );
    } finally {
      await relay.close();
    }
    const fmt = (m: { shell: number; exec: number; fresh: number }): string =>
      `shell ${m.shell.toFixed(1)} ms, own session ${m.exec.toFixed(1)} ms, new connection ${m.fresh.toFixed(1)} ms`;
    process.stderr.write(
      `remote shell, bare true, median of 20: 0 ms RTT: ${fmt(direct)}; +20 ms RTT: ${fmt(far)}\n`,
    );
    expect(far.shell).toBeLessThan(far.exec);
    expect(far.exec).toBeLessThan(far.fresh);
  });
});
