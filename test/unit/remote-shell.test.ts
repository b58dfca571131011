// The remote shell's loop (provider/src/host/remote-shell.sh) run locally in sh, dash, bash and
// busybox, with perl and without, as a child process, driven by the same client code SshHost
// uses: framing survives any bytes and any command's exit, a killed command takes its children
// along, a request cut short never runs.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  encodeRequest,
  encodeScript,
  FrameReader,
  RemoteShell,
  ShellEndedError,
  remoteShellCommand,
  remoteShellScript,
  REMOTE_SHELL_SCRIPT,
  type ShellReply,
} from "../../provider/src/host/remote-shell";
import { quoteArgv } from "../../provider/src/host/quote";
import { buildRemoteCommand } from "../../provider/src/host/sudo";
import {
  argvWithCachedScripts,
  declareRunsInShell,
  scriptArgv,
  scriptBody,
  scriptIn,
} from "../../provider/src/host/script";
import { compactShell } from "../../provider/src/host/shell-compact";
import { lockReleaseArgv } from "../../provider/src/host/lock";
import { remoteShellRequest } from "../../provider/src/host/remote-shell";
import { probeBatchArgv } from "../../provider/src/apply";
import { LOCKS, lockHeld } from "../support/host-locks";

// bash too: it is /bin/sh on some distributions
const shells = ["sh", "dash", "bash", "busybox"].filter(
  (s) => spawnSync(s, s === "busybox" ? ["true"] : ["-c", "true"]).status === 0,
);
const work = mkdtempSync(join(tmpdir(), "remote-shell-test-"));
const started: ChildProcessWithoutNullStreams[] = [];

// Replies go through the loop's perl where perl starts, else through a cat per reply: every test
// runs both ways, the second with a PATH whose programs are this one's but perl.
const PATH = process.env["PATH"] ?? "/usr/bin:/bin";
function pathWithout(program: RegExp, name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  for (const d of PATH.split(":")) {
    for (const f of existsSync(d) ? readdirSync(d) : []) {
      if (!program.test(f) && !existsSync(join(dir, f))) symlinkSync(join(d, f), join(dir, f));
    }
  }
  return dir;
}
const NO_PERL = pathWithout(/^perl/, "no-perl");
// perl but no grep: a sysctl value that comes through was read by the loop's perl
const NO_GREP = pathWithout(/^grep$/, "no-grep");
type Sender = "perl" | "cat";
const pathFor = (sender: Sender): string => (sender === "perl" ? PATH : NO_PERL);

/** What probe_sysctl prints for key k, unclaimed: its value's first line, "-" where it is not. */
function sysctlLine(k: string): string {
  const f = `/proc/sys/${k}`;
  return `${k} ${existsSync(f) ? (readFileSync(f, "utf8").split("\n")[0] ?? "") : "-"} 0\n`;
}

interface Local {
  readonly shell: RemoteShell;
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
}

/**
 * Starts the loop as a child of this process, or, with `sshd` (a shell called sshd-*, as a
 * session's parent is), as that shell's child: the anchor of its locks, which stays after the
 * loop (as a sleep of the same pid) until the test kills it. `env` adds to its environment.
 */
function startLocal(
  impl: string,
  sender: Sender,
  writes?: Buffer[],
  path = pathFor(sender),
  sshd?: string,
  env: NodeJS.ProcessEnv = {},
): Local {
  const argv = [
    ...(impl === "busybox" ? ["busybox", "sh"] : [impl]),
    "-c",
    remoteShellScript(),
    "remote-shell.sh",
    "10.0.0.9 5 10.0.0.1 22",
  ];
  const all = sshd ? [sshd, "-c", '"$@"; exec sleep 600', "sshd", ...argv] : argv;
  const child = spawn(all[0] ?? "sh", all.slice(1), {
    env: { ...env, PATH: path, TMPDIR: work },
    cwd: work,
  });
  started.push(child);
  const shell = new RemoteShell({
    write: (chunk) => {
      writes?.push(chunk);
      child.stdin.write(chunk);
    },
    destroy: () => {
      child.kill("SIGKILL");
    },
  });
  child.stdout.on("data", (chunk: Buffer) => shell.push(chunk));
  child.stdin.on("error", () => undefined);
  const exited = new Promise<number | null>((resolve) => {
    child.once("close", (code) => {
      shell.ended(`exited ${code}`);
      resolve(code);
    });
  });
  return { shell, child, exited };
}

const run = (shell: RemoteShell, argv: readonly string[], stdin = ""): Promise<ShellReply> =>
  shell.request(buildRemoteCommand(argv, "none"), Buffer.from(stdin));

/**
 * Returns the pid of the loop's perl, as the loop names it to commands (PULUMI_HYPERVISOR_PERL,
 * `DIR/k:PID:REQUEST`), and that process's name; undefined without one. Perl makes the loop's
 * directory and leaves its command substitution, so it is not a child of the loop.
 */
async function loopPerl(shell: RemoteShell): Promise<{ pid: string; comm: string } | undefined> {
  const named = text(
    await shell.request('printf %s "${PULUMI_HYPERVISOR_PERL-}"', Buffer.alloc(0)),
  );
  const pid = /^.+\/k:(\d+):\d+$/.exec(named.stdout)?.[1];
  if (pid === undefined) return undefined;
  const comm = spawnSync("ps", ["-p", pid, "-o", "comm="], { encoding: "utf8" }).stdout.trim();
  return { pid, comm };
}

/**
 * Returns a folder of the test's own whose PROGRAMS note each start in LOG (the program's name,
 * and its arguments with `args`), then run the real one: put in front of a PATH, it shows what a
 * loop started.
 */
function spyOn(name: string, programs: readonly string[], log: string, args = true): string {
  const dir = join(work, name);
  mkdirSync(dir);
  for (const p of programs) {
    const real = spawnSync("sh", ["-c", `command -v ${p}`], { encoding: "utf8" }).stdout.trim();
    const note = args ? `echo ${p} "$@"` : `echo ${p}`;
    writeFileSync(join(dir, p), `#!/bin/sh\n${note} >>${log}\nexec ${real} "$@"\n`, {
      mode: 0o755,
    });
  }
  return dir;
}

/** How many processes on the machine run `sleep SECS` (a test's own unique duration). */
const sleepers = (secs: number): string =>
  spawnSync("sh", ["-c", `ps -eo args | grep -c '^sleep ${secs}$' || true`], {
    encoding: "utf8",
  }).stdout.trim();

const text = (r: ShellReply): { code: number; stdout: string; stderr: string } => ({
  code: r.code,
  stdout: r.stdout.toString("utf8"),
  stderr: r.stderr.toString("utf8"),
});

afterEach(() => {
  for (const c of started.splice(0)) c.kill("SIGKILL");
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("FrameReader", () => {
  it("reads hello, started marks and replies split at every byte", () => {
    const events: string[] = [];
    const reader = new FrameReader({
      hello: (h) => events.push(`hello ${h.pid} ${h.sshConnection}`),
      started: () => events.push("started"),
      reply: (r) =>
        events.push(`reply ${r.code} ${r.stdout.toString("hex")} ${r.stderr.toString("hex")}`),
      invalid: (why) => events.push(`invalid ${why}`),
    });
    const n1 = "0123456789abcdef0123456789abcdef";
    const n2 = "9876543210fedcba9876543210fedcba";
    const push = (s: string | Buffer): void => {
      for (const byte of Buffer.from(s)) reader.push(Buffer.from([byte]));
    };
    push("pulumi-hypervisor-shell 3 42 1.2.3.4 5 6.7.8.9 22\n");
    reader.expect(n1);
    // output that holds most of the nonce, and the other request's nonce, ends nothing
    push(Buffer.concat([Buffer.from(".\x00\n"), Buffer.from(n1.slice(0, 31)), Buffer.from(n2)]));
    push(`${n1} 0\n.${n1}\n`);
    reader.expect(n2);
    push(`.${n2} 7\n${n2}\n`);
    expect(events).toEqual([
      "hello 42 1.2.3.4 5 6.7.8.9 22",
      "started",
      `reply 0 000a${Buffer.from(n1.slice(0, 31) + n2).toString("hex")} 2e`,
      "started",
      "reply 7  ",
    ]);
  });

  it("reads a reply that comes in one chunk with the next hello-less bytes refused", () => {
    const events: string[] = [];
    const reader = new FrameReader({
      hello: () => events.push("hello"),
      started: () => events.push("started"),
      reply: (r) => events.push(`reply ${r.code} ${r.stdout.toString()} ${r.stderr.toString()}`),
      invalid: (why) => events.push(`invalid ${why}`),
    });
    const n = "00000000000000000000000000000001";
    reader.push(Buffer.from("pulumi-hypervisor-shell 3 7 \n"));
    reader.expect(n);
    reader.push(Buffer.from(`.out${n} 3\nerr${n}\nlate`));
    expect(events).toEqual([
      "hello",
      "started",
      "reply 3 out err",
      "invalid expected the started mark, got byte 108",
    ]);
  });

  it("calls a garbled stream invalid instead of guessing", () => {
    const events: string[] = [];
    const reader = new FrameReader({
      hello: () => events.push("hello"),
      started: () => events.push("started"),
      reply: () => events.push("reply"),
      invalid: (why) => events.push(`invalid ${why}`),
    });
    reader.push(Buffer.from("Welcome to the restricted shell\n"));
    expect(events).toEqual(['invalid unexpected first line "Welcome to the restricted shell"']);
  });

  const nonce = "0123456789abcdef0123456789abcdef";
  it("encodes a request as header, command, stdin and a closing newline", () => {
    expect(encodeRequest("echo ü", Buffer.from([0, 1]), nonce).toString("latin1")).toBe(
      `R 7 2 ${nonce}\necho \u00c3\u00bc\u0000\u0001\n`,
    );
    expect(() => encodeRequest("true", Buffer.alloc(0), "x")).toThrow(/32 hex digits/);
  });

  it("sends a short command of printable ASCII as a line, anything else by length", () => {
    expect(encodeRequest("exec 'ip' 'link'", Buffer.from("in"), nonce).toString("latin1")).toBe(
      `L 16 2 ${nonce}\nexec 'ip' 'link'\nin\n`,
    );
    expect(encodeRequest("echo 'a\nb'", Buffer.alloc(0), nonce).toString("latin1")).toMatch(
      /^R 10 0 /,
    );
    expect(
      encodeRequest(`echo ${"x".repeat(3000)}`, Buffer.alloc(0), nonce).toString("latin1"),
    ).toMatch(/^R 3005 0 /);
    expect(encodeScript({ hash: "ab", body: "echo\n" }).toString("latin1")).toBe(
      "S ab 5\necho\n\n",
    );
  });
});

const variants = shells.flatMap((s): Array<[string, Sender]> => [
  [s, "perl"],
  [s, "cat"],
]);

describe.each(variants)("remote-shell.sh in %s, replies by %s", (impl, sender) => {
  it("says hello with its pid and $SSH_CONNECTION, then runs commands in order", async () => {
    const { shell } = startLocal(impl, sender);
    const hello = await shell.hello;
    expect(hello.sshConnection).toBe("10.0.0.9 5 10.0.0.1 22");
    expect(hello.pid).toBeGreaterThan(1);
    for (let i = 0; i < 20; i++) {
      expect(text(await run(shell, ["echo", String(i)]))).toEqual({
        code: 0,
        stdout: `${i}\n`,
        stderr: "",
      });
    }
  });

  it("sends replies through one perl process of its own where perl starts, else a cat each", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    for (let i = 0; i < 3; i++) expect(text(await run(shell, ["echo", "x"])).stdout).toBe("x\n");
    const perl = await loopPerl(shell);
    expect(perl?.comm).toBe(sender === "perl" ? "perl" : undefined);
    if (sender === "perl") {
      // of its own: another loop has another
      const other = startLocal(impl, sender);
      await other.shell.hello;
      const second = await loopPerl(other.shell);
      expect(second?.comm).toBe("perl");
      expect(second?.pid).not.toBe(perl?.pid);
    }
  });

  it("watches a running command from its perl where perl starts, else from a subshell", async () => {
    const { shell } = startLocal(impl, sender);
    const hello = await shell.hello;
    const running = shell.request("exec sleep 0.6", Buffer.alloc(0));
    await new Promise((r) => setTimeout(r, 250));
    // the loop's children while the command runs: the command (sleep), perl, and a watcher only
    // where there is no perl to watch it
    const children = spawnSync("ps", ["--ppid", String(hello.pid), "-o", "comm="], {
      encoding: "utf8",
    })
      .stdout.split("\n")
      .filter((c) => c !== "");
    expect(children.filter((c) => c === "sleep")).toHaveLength(1);
    expect(children.filter((c) => c !== "sleep" && c !== "perl")).toHaveLength(
      sender === "perl" ? 0 : 1,
    );
    expect(text(await running)).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("gives a probe the sysctls it asks for: from its perl where perl starts, else by grep", async () => {
    // the perl variant has no grep on its PATH: a value that comes through came from perl (but
    // busybox runs its own grep whatever the PATH, so only the other shells tell the two apart)
    const { shell } = startLocal(impl, sender, undefined, sender === "perl" ? NO_GREP : NO_PERL);
    await shell.hello;
    const keys = ["net/ipv4/ip_forward", "kernel/pid_max", "net/ipv4/tcp_rmem", "kernel/nope"];
    const want = (ks: readonly string[]): string => ks.map(sysctlLine).join("");
    const probe = (body: string): Promise<ShellReply> =>
      shell.request(`${scriptBody("sysctl-probe.sh")}\n${body}`, Buffer.alloc(0));
    for (let i = 0; i < 3; i++) {
      expect(text(await probe(`probe_sysctl me ${keys.join(" ")}`))).toEqual({
        code: 0,
        stdout: want(keys),
        stderr: "",
      });
    }
    // twice in one command, then after a reader that asked and never read (a killed one): its
    // query and answer are gone once its command is over
    const twice = `probe_sysctl me ${keys[0]}; probe_sysctl me ${keys[1]}`;
    expect(text(await probe(twice)).stdout).toBe(want(keys.slice(0, 2)));
    const orphan = `f=\${PULUMI_HYPERVISOR_PERL%%:*}; [ -z "$f" ] || echo "9.9 ${keys[2]}" 1<>"\${f}q"`;
    expect(text(await probe(orphan)).code).toBe(0);
    expect(text(await probe(`probe_sysctl me ${keys[2]}`)).stdout).toBe(want([keys[2]!]));
    if (sender === "perl" && impl !== "busybox") {
      // no path out of /proc/sys, and an answer over 8 kB declined: grep, not here
      const outside = "../../proc/self/stat";
      expect(text(await probe(`probe_sysctl me ${outside}`)).stdout).toBe(`${outside} - 0\n`);
      const many = Array.from({ length: 400 }, () => keys[0]!);
      expect(text(await probe(`probe_sysctl me ${many.join(" ")}`)).stdout).toBe(
        `${keys[0]} - 0\n`.repeat(400),
      );
      // a command without the variable (a session of its own) reads by grep
      expect(text(await probe(`PULUMI_HYPERVISOR_PERL=; probe_sysctl me ${keys[0]}`)).stdout).toBe(
        `${keys[0]} - 0\n`,
      );
    }
  });

  it("gives a probe the processes of a name and the ports they listen on: from its perl where perl starts, else by grep and ss", async () => {
    // a PATH whose grep and ss note each start: with perl none runs (busybox has its own grep)
    const log = join(work, `procs-log-${impl}-${sender}`);
    const spy = spyOn(`spy-procs-${impl}-${sender}`, ["grep", "ss"], log, false);
    const { shell } = startLocal(impl, sender, undefined, `${spy}:${pathFor(sender)}`);
    await shell.hello;
    // two listening sockets of this process, on both families, and one that listens on nothing
    const servers = await Promise.all(
      ["127.0.0.1", "::1", "127.0.0.1"].map(
        (address) =>
          new Promise<Server>((done, fail) => {
            const s = createServer();
            s.once("error", fail);
            s.listen({ host: address, port: 0 }, () => done(s));
          }),
      ),
    );
    try {
      const ports = servers.map((s) => (s.address() as AddressInfo).port);
      // each socket's inode as ss names it, and the descriptor of this process that holds it
      const inode = (port: number): string => {
        const out = spawnSync("ss", ["-Hltne", `sport = :${port}`], { encoding: "utf8" }).stdout;
        return /ino:(\d+)/.exec(out)?.[1] ?? "";
      };
      const fdOf = (ino: string): string =>
        readdirSync("/proc/self/fd").find((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${ino}]`;
          } catch {
            return false;
          }
        }) ?? "";
      const [v4, v6] = [inode(ports[0]!), inode(ports[1]!)];
      expect(v4).toMatch(/^\d+$/);
      expect(v6).toMatch(/^\d+$/);
      // a proc tree of the test's own: sshd 412 holds the v4 socket (its fdinfo has the inode), sshd
      // 501 the v6 one (no inode in its fdinfo, as before Linux 5.14: its fd is a link to this
      // process's descriptor, which a stat follows), and cupsd the third
      const proc = join(work, `proc-${impl}-${sender}`);
      const fake = (pid: number, comm: string, fds: Record<string, string>): void => {
        mkdirSync(join(proc, String(pid), "fdinfo"), { recursive: true });
        mkdirSync(join(proc, String(pid), "fd"));
        writeFileSync(join(proc, String(pid), "comm"), `${comm}\n`);
        for (const [fd, ino] of Object.entries(fds)) {
          const info = /^\d+$/.test(ino) ? `ino:\t${ino}\n` : "";
          writeFileSync(join(proc, String(pid), "fdinfo", fd), `pos:\t0\nflags:\t02\n${info}`);
          if (!info) symlinkSync(ino, join(proc, String(pid), "fd", fd));
        }
      };
      fake(412, "sshd", { 3: "7", 4: v4 });
      fake(501, "sshd", { 5: `/proc/${process.pid}/fd/${fdOf(v6)}` });
      fake(77, "cupsd", { 3: inode(ports[2]!) });
      fake(90, "sshd-proxy", { 3: inode(ports[2]!) });
      const lib = scriptBody("resources/nat-rule/sshd-ports.sh");
      for (let pass = 0; pass < 2; pass++) {
        const r = text(
          await shell.request(
            `${lib}\nsshd_ports '${proc}'; procs_named sshd '${proc}'; echo "procs:$procs"`,
            Buffer.alloc(0),
          ),
        );
        expect(r).toEqual({
          code: 0,
          stdout: `${ports[0]}\n${ports[1]}\nprocs: ${proc}/412 ${proc}/501\n`,
          stderr: "",
        });
      }
      // a name no process has
      const none = `${lib}\nprocs_named nobody '${proc}'; echo "procs:$procs"`;
      expect(text(await shell.request(none, Buffer.alloc(0))).stdout).toBe("procs:\n");
      const ran = existsSync(log) ? readFileSync(log, "utf8") : "";
      if (sender === "cat") expect(ran).toContain("ss\n");
      if (sender === "perl" && impl !== "busybox") expect(ran).toBe("");
    } finally {
      for (const s of servers) s.close();
    }
  });

  if (sender === "perl") {
    it("uses cat and dd when perl does not start, and ends once its perl is gone", async () => {
      // a perl that exits at once: the loop sees no "ready" and sends replies with cat
      const fake = join(work, `fake-perl-${impl}-${sender}`);
      mkdirSync(fake);
      writeFileSync(join(fake, "perl"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
      const broken = startLocal(impl, sender, undefined, `${fake}:${PATH}`);
      await broken.shell.hello;
      expect(text(await run(broken.shell, ["echo", "by cat"])).stdout).toBe("by cat\n");

      const { shell, exited } = startLocal(impl, sender);
      await shell.hello;
      const perl = await loopPerl(shell);
      expect(perl?.comm).toBe("perl");
      process.kill(Number(perl?.pid), "SIGKILL");
      // perl takes each request's stdin too: the loop ends before the command runs, and the
      // client sees the shell end without a reply
      const marker = join(work, `ran-${impl}-${sender}`);
      await expect(run(shell, ["touch", marker])).rejects.toThrow(ShellEndedError);
      expect(existsSync(marker)).toBe(false);
      expect(await exited).not.toBe(0);
    });
  }

  describe("host locks taken in the loop", () => {
    const keys: string[] = [];
    afterAll(() => {
      for (const k of keys) {
        for (const ext of ["lock", "since", "rel"])
          rmSync(join(LOCKS, `${k}.${ext}`), { force: true });
      }
    });
    const newKey = (): string => {
      mkdirSync(LOCKS, { recursive: true });
      const k = `Test.${randomBytes(8).toString("hex")}`;
      keys.push(k);
      return k;
    };
    const until = async (what: string, ok: () => boolean, ms = 3000): Promise<void> => {
      for (const t0 = Date.now(); !ok(); await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
      }
    };
    const alive = (pid: number): boolean => existsSync(`/proc/${pid}`);
    // the holder a key's .since names (its token, pid, anchor and keys)
    const since = (k: string): string[] =>
      readFileSync(join(LOCKS, `${k}.since`), "utf8")
        .trim()
        .split(" ");
    /** lock-take.sh as the first command of an operation, with its wait in seconds. */
    const take = (shell: RemoteShell, token: string, wait: number, key: string, argv: string[]) => {
      const { argv: cached, scripts } = argvWithCachedScripts(
        scriptArgv(
          scriptIn(__dirname, "../../provider/src/host/lock-take.sh", [
            token,
            String(wait),
            key,
            "--",
            ...argv,
          ]),
        ),
      );
      return shell.request(remoteShellRequest(cached), Buffer.alloc(0), scripts);
    };
    /** A PATH whose `flock` and `mkfifo` note each start and its arguments in `log`, then run. */
    const spyLock = (log: string): string => {
      const dir = spyOn(
        `spy-${impl}-${sender}-${randomBytes(4).toString("hex")}`,
        ["flock", "mkfifo"],
        log,
      );
      return `${dir}:${pathFor(sender)}`;
    };
    // a loop whose parent is called sshd-*, as a session's is: the anchor of its locks, which
    // stays (as sleep) after the loop ends, until the test kills it
    const underSshd = (): Local => {
      const sshd = join(work, `sshd-${impl}-${sender}-${randomBytes(4).toString("hex")}`);
      symlinkSync(
        spawnSync("sh", ["-c", "command -v dash || command -v sh"], {
          encoding: "utf8",
        }).stdout.trim(),
        sshd,
      );
      return startLocal(impl, sender, undefined, pathFor(sender), sshd);
    };

    it("takes the lock in its perl where perl starts (no flock, mkfifo or holder process), else by a holder", async () => {
      const log = join(work, `lock-log-${impl}-${sender}`);
      const { shell } = startLocal(impl, sender, undefined, spyLock(log));
      const hello = await shell.hello;
      const key = newKey();
      const token = randomBytes(8).toString("hex");
      expect(text(await take(shell, token, 5, key, ["echo", "first"]))).toEqual({
        code: 0,
        stdout: "first\n",
        stderr: "",
      });
      expect(lockHeld(key)).toBe(true);
      const [t, pid, anchor, ...named] = since(key);
      expect([t, anchor, named]).toEqual([token, String(hello.pid), [key]]);
      const perl = await loopPerl(shell);
      // what ran besides the loop's own start (where perl does not start, nothing makes fifos)
      const ran = (existsSync(log) ? readFileSync(log, "utf8") : "")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.replace(/ \d+$/, " FD"));
      if (sender === "perl") {
        // the holder is the loop's perl, which made its private fifos and the key's release fifo:
        // no program ran
        expect(perl?.comm).toBe("perl");
        expect(pid).toBe(perl?.pid);
        expect(ran).toEqual([]);
      } else {
        expect(perl).toBeUndefined();
        // (busybox runs its own mkfifo, which the PATH does not see)
        const made = impl === "busybox" ? [] : [`mkfifo ${join(LOCKS, `${key}.rel`)}`];
        expect(ran).toEqual([...made, "flock -w 5 FD"]);
      }
      const rel = statSync(join(LOCKS, `${key}.rel`));
      expect([rel.isFIFO(), rel.mode & 0o777]).toEqual([true, 0o600]);
      // a later command finds it held; the last one releases it before its reply
      const check = argvWithCachedScripts(
        scriptArgv(
          scriptIn(__dirname, "../../provider/src/host/lock-check.sh", [
            `${token}/${key}`,
            "echo",
            "later",
          ]),
        ),
      );
      const later = await shell.request(
        remoteShellRequest(check.argv),
        Buffer.alloc(0),
        check.scripts,
        `${token}/${key}`,
      );
      expect(text(later)).toEqual({ code: 0, stdout: "later\n", stderr: "" });
      await until("the lock is free after its last command", () => !lockHeld(key));
      expect(readFileSync(join(LOCKS, `${key}.since`), "utf8")).toBe("");
      // taken again in the same loop, and the loop runs on
      expect(text(await take(shell, token.replace(/^./, "f"), 5, key, ["true"])).code).toBe(0);
      expect(lockHeld(key)).toBe(true);
      expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
    });

    it("keeps a lock past the end of its loop until its release, or until its sshd is gone", async () => {
      for (const end of ["release", "sshd gone"]) {
        const { shell, child } = underSshd();
        const hello = await shell.hello;
        const key = newKey();
        const token = randomBytes(8).toString("hex");
        expect(text(await take(shell, token, 5, key, ["true"])).code).toBe(0);
        const holder = Number(since(key)[1]);
        expect(since(key)[2]).toBe(String(child.pid));
        // the session ends: the loop is gone, the lock and its holder are not
        child.stdin.end();
        await until("the loop ends", () => !alive(hello.pid));
        await new Promise((r) => setTimeout(r, 300));
        expect([lockHeld(key), alive(holder)]).toEqual([true, true]);
        if (end === "release") {
          // what the client runs when no shell is left to take the release frame
          spawnSync("sh", [
            "-c",
            scriptBody("host/lock-release.sh"),
            "lock-release.sh",
            `${token}/${key}`,
          ]);
        } else {
          child.kill("SIGKILL");
        }
        await until(`the lock goes (${end})`, () => !lockHeld(key));
        await until(`its holder ends (${end})`, () => !alive(holder));
        expect(readFileSync(join(LOCKS, `${key}.since`), "utf8")).toBe("");
        child.kill("SIGKILL");
      }
    }, 20_000);

    it("times out naming no holder; a killed command takes its lock along, or takes none later", async () => {
      const { shell } = startLocal(impl, sender);
      await shell.hello;
      const key = newKey();
      // another process holds the key, with no .since of ours
      const other = spawn("sh", [
        "-c",
        'exec 9>>"$1" && flock 9 && exec sleep 30',
        "sh",
        join(LOCKS, `${key}.lock`),
      ]);
      started.push(other);
      await until("the other process holds the key", () => lockHeld(key));
      const t0 = Date.now();
      expect(
        text(await take(shell, randomBytes(8).toString("hex"), 1, key, ["echo", "ran"])),
      ).toEqual({
        code: 125,
        stdout: "",
        stderr: `host lock: timed out after 1 s waiting for the host lock on ${key} (holder since, operation, pid, connection, keys: unknown)\n`,
      });
      expect(Date.now() - t0).toBeLessThan(5000);
      const waiting = take(shell, randomBytes(8).toString("hex"), 20, key, ["echo", "ran"]);
      await new Promise((r) => setTimeout(r, 300));
      shell.kill();
      expect((await waiting).code).toBe(137);
      other.kill();
      await until("the other process lets go", () => !lockHeld(key));
      await new Promise((r) => setTimeout(r, 300));
      expect(lockHeld(key)).toBe(false);
      // a command killed after its lock was taken takes it along, as a holder it started would
      const secs = 4000 + shells.indexOf(impl);
      const holding = take(shell, randomBytes(8).toString("hex"), 5, key, ["sleep", String(secs)]);
      await until("the command holds the key", () => lockHeld(key));
      shell.kill();
      expect((await holding).code).toBe(137);
      await until("the killed command's lock goes", () => !lockHeld(key), 1000);
      expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
    });
  });

  it("returns hostile bytes exactly: NUL, invalid UTF-8, no trailing newline, frame-like text", async () => {
    const { shell } = startLocal(impl, sender);
    const bytes = Buffer.from([0, 0xff, 0xfe, 0x0a, 0x2e, 0x0d, 0x00, 0x80]);
    const r = await shell.request(quoteArgv(["sh", "-c", 'cat; printf "0 0 0\\n." >&2']), bytes);
    expect(r.stdout).toEqual(bytes);
    expect(r.stderr.toString("latin1")).toBe("0 0 0\n.");
    const raw = await shell.request(
      quoteArgv(["sh", "-c", "printf '\\000\\377\\n\\000'"]),
      Buffer.alloc(0),
    );
    expect([...raw.stdout]).toEqual([0, 0xff, 0x0a, 0]);
    expect(text(await run(shell, ["printf", "%s", "no newline"])).stdout).toBe("no newline");
  });

  it("survives exit, set -e, exec, cd and a closed stdout in a command", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const sh = (script: string): Promise<ShellReply> => shell.request(script, Buffer.alloc(0));
    expect((await sh("exit 7")).code).toBe(7);
    expect((await sh("set -e; false; echo not here")).code).toBe(1);
    expect(text(await sh("exec echo replaced"))).toMatchObject({ code: 0, stdout: "replaced\n" });
    expect((await sh("cd /; pwd")).stdout.toString()).toBe("/\n");
    expect((await sh("pwd")).stdout.toString()).toBe(`${work}\n`);
    expect(text(await sh("exec >&-; echo gone >&2; exit 3"))).toEqual({
      code: 3,
      stdout: "",
      stderr: expect.stringContaining("gone"),
    });
    expect(text(await sh("sh -c 'kill -KILL $PPID'"))).toMatchObject({
      code: 137,
    });
    expect(text(await run(shell, ["echo", "still here"])).stdout).toBe("still here\n");
  });

  it("takes release frames when idle and while a command runs, and exports the lock anchor", async () => {
    const { shell } = startLocal(impl, sender);
    const hello = await shell.hello;
    // no sshd above a local loop: locks taken in it live as long as the loop
    expect(
      text(await run(shell, ["sh", "-c", 'echo "$PULUMI_HYPERVISOR_SHELL_ANCHOR"'])).stdout,
    ).toBe(`${hello.pid}\n`);
    shell.notify(Buffer.from("U 0123abcd\n"));
    shell.notify(Buffer.from("U not-a-token/../x\n"));
    expect(text(await run(shell, ["echo", "after idle release"])).stdout).toBe(
      "after idle release\n",
    );
    const slow = run(shell, ["sh", "-c", "sleep 0.3; echo slow"]);
    await new Promise((r) => setTimeout(r, 100));
    shell.notify(Buffer.from("U 0123abcd\n"));
    expect(text(await slow)).toEqual({ code: 0, stdout: "slow\n", stderr: "" });
    expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
  });

  /**
   * A holder as lock-take.sh starts one: it reads the first key's fifo until its token comes, then
   * makes `marker`. Resolves once it holds the fifo open (lock-take.sh opens it before its
   * command's reply: a release is never early).
   */
  async function startHolder(what: string): Promise<{
    ref: string;
    marker: string;
    done: Promise<unknown>;
    stop: () => void;
  }> {
    mkdirSync(LOCKS, { recursive: true });
    const token = randomBytes(8).toString("hex");
    const key = `Test.${token}`;
    const fifo = join(LOCKS, `${key}.rel`);
    const marker = join(work, `${what}-${impl}-${sender}`);
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const holder = spawn("sh", [
      "-c",
      'exec 9<>"$1"; while read -r t <&9; do [ "$t" = "$3" ] && break; done; : >"$2"',
      "holder",
      fifo,
      marker,
      token,
    ]);
    started.push(holder);
    const done = new Promise((resolve) => holder.once("close", resolve));
    for (let i = 0; i < 200 && !existsSync(`/proc/${holder.pid}/fd/9`); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const stop = (): void => {
      rmSync(fifo, { force: true });
      holder.kill();
    };
    return { ref: `${token}/${key}`, marker, done, stop };
  }

  it("releases the host lock a request names once its command ends, before the reply", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const holder = await startHolder("released");
    try {
      // the command runs while the lock is still held; the reply comes after its release
      const r = await shell.request(
        `[ -e ${holder.marker} ] || echo held`,
        Buffer.alloc(0),
        [],
        holder.ref,
      );
      expect(text(r)).toEqual({ code: 0, stdout: "held\n", stderr: "" });
      await holder.done;
      expect(existsSync(holder.marker)).toBe(true);
      expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
    } finally {
      holder.stop();
    }
  });

  it("delivers a release frame sent while a command runs before that command ends", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const holder = await startHolder("released-mid");
    try {
      // the command waits up to 5 s for the holder to see its token, which only the frame sends
      const waiting = shell.request(
        `i=0; while [ ! -e ${holder.marker} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; ` +
          `[ -e ${holder.marker} ] && echo released`,
        Buffer.alloc(0),
      );
      await new Promise((r) => setTimeout(r, 150));
      shell.notify(Buffer.from(`U ${holder.ref}\n`));
      expect(text(await waiting)).toEqual({ code: 0, stdout: "released\n", stderr: "" });
      expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
    } finally {
      holder.stop();
    }
  });

  // seven loops started one after the other: on a busy machine each start takes most of a second
  it(
    "refuses a request whose lock is not TOKEN/KEY, running nothing",
    { timeout: 30_000 },
    async () => {
      for (const lock of ["../x", "0123", "0123/a/b", "0123/", "/key", "xyz/key", "0123/ke y"]) {
        const { shell, child, exited } = startLocal(impl, sender);
        await shell.hello;
        const marker = join(work, `lock-${impl}-${sender}`);
        const cmd = `touch ${marker}`;
        child.stdin.write(`L ${cmd.length} 0 ${"a".repeat(32)} ${lock}\n${cmd}\n\n`);
        expect(await exited).toBe(2);
        expect(existsSync(marker)).toBe(false);
        if (!lock.includes(" ")) {
          expect(() => encodeRequest("true", Buffer.alloc(0), "a".repeat(32), lock)).toThrow(
            /invalid host lock reference/,
          );
        }
      }
    },
  );

  it("gives a command its stdin, and end of file when there is none", async () => {
    const { shell } = startLocal(impl, sender);
    expect(text(await run(shell, ["wc", "-c"], "four"))).toMatchObject({ stdout: "4\n" });
    expect(text(await run(shell, ["cat"]))).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(
      text(await run(shell, ["sh", "-c", "read -r a; read -r b; echo $b$a"], "x\ny\n")).stdout,
    ).toBe("yx\n");
  });

  it("carries 5 MB each way and a command line of 200 kB", async () => {
    const { shell } = startLocal(impl, sender);
    const big = Buffer.alloc(5 * 1024 * 1024 + 17, "ab\u0000");
    const r = await shell.request(quoteArgv(["cat"]), big);
    expect(r.stdout.equals(big)).toBe(true);
    // four words of 50 kB (one word may not exceed 128 kB in exec)
    const words = ["a", "b", "c", "d"].map((c) => c.repeat(50_000));
    const echoed = await run(shell, ["sh", "-c", 'printf %s "$@"', "sh", ...words]);
    expect(echoed.stdout.toString() === words.join("")).toBe(true);
    const err = await shell.request("head -c 3000000 /dev/zero >&2; echo end", Buffer.alloc(0));
    expect(err.stderr.length).toBe(3_000_000);
    expect(err.stdout.toString()).toBe("end\n");
  });

  it("kills a command and every process it started, then runs the next", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const marker = join(work, `alive-${impl}-${sender}`);
    const secs = 3000 + shells.indexOf(impl);
    const running = shell.request(
      `sh -c 'sleep ${secs}; touch ${marker}' & sleep ${secs}; touch ${marker}`,
      Buffer.alloc(0),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t0 = Date.now();
    shell.kill();
    const r = await running;
    expect(r.code).toBe(137);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(sleepers(secs)).toBe("0");
    expect(existsSync(marker)).toBe(false);
    expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
  });

  it("hangs up a running command and what it started when its session ends", async () => {
    const { shell, child, exited } = startLocal(impl, sender);
    await shell.hello;
    const secs = 5000 + 2 * shells.indexOf(impl) + (sender === "perl" ? 0 : 1);
    const running = shell.request(`sh -c 'sleep ${secs}' & sleep ${secs}`, Buffer.alloc(0));
    running.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.stdin.end();
    await exited;
    let left = "";
    for (let i = 0; i < 30; i++) {
      left = sleepers(secs);
      if (left === "0") break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(left).toBe("0");
  });

  it("keeps a script body sent once and runs requests that refer to it", async () => {
    const writes: Buffer[] = [];
    const { shell } = startLocal(impl, sender, writes);
    await shell.hello;
    const script = { hash: "0123456789abcdef0123456789abcdef", body: 'echo "kept $0 $1"; cat' };
    const command = `exec sh -c '. "$PULUMI_HYPERVISOR_SCRIPTS/${script.hash}"' name`;
    const first = await shell.request(`${command} one`, Buffer.from("in1"), [script]);
    expect(text(first)).toEqual({ code: 0, stdout: "kept name one\nin1", stderr: "" });
    const second = await shell.request(`${command} two`, Buffer.from("in2"), [script]);
    expect(text(second)).toEqual({ code: 0, stdout: "kept name two\nin2", stderr: "" });
    // the body crossed once, with the first request; the second carried only its reference
    const sent = writes.map((w) => w.toString("latin1"));
    expect(sent.filter((w) => w.includes("cat")).length).toBe(1);
    // and the end of the first command's watcher rode in front of it, not in a write of its own
    expect(sent).toHaveLength(2);
    expect(sent[1]).toMatch(/^\nL \d+ 3 [0-9a-f]{32}\nexec sh/);
  });

  it("runs a kept lock script in the request's own subshell, then the command it wraps", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const argv = scriptArgv(
      scriptIn(__dirname, "../../provider/src/host/lock-check.sh", ["00ff", "echo", "wrapped"]),
    );
    const { argv: cached, scripts } = argvWithCachedScripts(argv);
    const line = remoteShellRequest(cached);
    expect(line).toMatch(
      /^set -- 00ff echo wrapped; \. "\$PULUMI_HYPERVISOR_SCRIPTS\/[0-9a-f]{32}"$/,
    );
    const r = text(await shell.request(line, Buffer.alloc(0), scripts));
    // lock-check.sh itself decides: without a lock directory (or flock) it runs the command,
    // with one the operation's fifo is missing here, so the lock counts as lost
    const locks = existsSync(LOCKS) && spawnSync("flock", ["-V"]).status === 0;
    expect(r).toEqual(
      locks
        ? {
            code: 125,
            stdout: "",
            stderr:
              "host lock: lost before this command (the connection that took it closed, or its holder was killed)\n",
          }
        : { code: 0, stdout: "wrapped\n", stderr: "" },
    );
  });

  it("has a kept lock script source the shell-safe script it wraps, in the same process", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    const probe = probeBatchArgv([{ argv: ["echo", "probed"], shown: ["echo"] }]);
    const argv = scriptArgv(
      scriptIn(__dirname, "../../provider/src/host/lock-check.sh", ["00ff", ...probe]),
    );
    const { argv: cached, scripts } = argvWithCachedScripts(argv);
    // apply-batch.sh comes as `. HASH ARGS...` (run-wrapped.sh sources it), its arguments as they were
    expect(cached.slice(4, 7)).toEqual(["00ff", ".", scripts[1]?.hash]);
    expect(cached.slice(7)).toEqual(probe.slice(4));
    const r = text(await shell.request(remoteShellRequest(cached), Buffer.alloc(0), scripts));
    const locks = existsSync(LOCKS) && spawnSync("flock", ["-V"]).status === 0;
    if (locks) expect(r.code).toBe(125);
    else expect(r).toMatchObject({ code: 0, stdout: "@@pulumi-hypervisor-probe 0\nprobed\n" });
  });

  it("has apply-batch.sh source a shell-safe kept probe in a subshell: no shell of its own", async () => {
    // the rewrite: a kept probe declared shell-safe comes as `. HASH ARGS...`, its length word
    // counting those words
    declareRunsInShell("tap-probe.sh");
    const tap = scriptArgv(
      scriptIn(__dirname, "../../provider/src/resources/tap-device/tap-probe.sh", ["a b", "c"]),
    );
    const rewritten = argvWithCachedScripts(
      probeBatchArgv([
        { argv: tap, shown: ["tap-probe.sh"] },
        { argv: ["echo", "plain"], shown: ["echo"] },
      ]),
    );
    const tapHash = rewritten.scripts.find((s) => s.body === compactShell(tap[2] ?? ""))?.hash;
    expect(rewritten.argv.slice(4)).toEqual([
      ...["probe-bg", "0", "4", ".", tapHash, "a b", "c"],
      ...["probe-bg", "0", "2", "echo", "plain"],
    ]);
    // running it: $$ is the loop's pid in a subshell of it, a new one in a shell of its own
    const { shell, child } = startLocal(impl, sender);
    await shell.hello;
    const kept = {
      hash: "0123456789abcdef0123456789abcdef",
      body: 'echo "$# [$1] [$2] $$"\nexit 3\n',
    };
    const argv = scriptArgv(
      scriptIn(__dirname, "../../provider/src/apply-batch.sh", [
        ...["probe", "0", "4", ".", kept.hash, "a b", "$(touch pwned)"],
        ...["probe", "0", "2", "echo", "plain"],
        ...["probe", "1", "3", ".", kept.hash, "z"],
      ]),
    );
    const { argv: cached, scripts } = argvWithCachedScripts(argv);
    const line = remoteShellRequest(cached);
    const r = text(await shell.request(line, Buffer.alloc(0), [...scripts, kept]));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "@@pulumi-hypervisor-probe 0",
        `2 [a b] [$(touch pwned)] ${child.pid}`,
        "@@pulumi-hypervisor-probe 1",
        "plain",
        "@@pulumi-hypervisor-probe 2",
        `1 [z] [] ${child.pid}`,
        "",
      ].join("\n"),
    );
    // each probe's exit code is its own: the sourced script's exit ended only its subshell (the
    // last probe's, the batch, whose trap printed the code)
    expect(r.stderr.match(/@@pulumi-hypervisor-probed \d \d+/g)).toEqual([
      "@@pulumi-hypervisor-probed 0 3",
      "@@pulumi-hypervisor-probed 1 0",
      "@@pulumi-hypervisor-probed 2 3",
    ]);
    expect(existsSync(join(work, "pwned"))).toBe(false);
  });

  it("gives probes run side by side their sysctls, asking the loop's perl one at a time", async () => {
    // no grep for the perl variant (busybox has its own): what comes, came from perl; eight CPUs,
    // so apply-batch.sh runs them side by side whatever this machine has
    const { shell } = startLocal(
      impl,
      sender,
      undefined,
      sender === "perl" ? NO_GREP : NO_PERL,
      undefined,
      { PULUMI_HYPERVISOR_CPUS_ONLINE: "0-7" },
    );
    await shell.hello;
    const keys = ["net/ipv4/ip_forward", "kernel/pid_max", "net/ipv4/tcp_rmem"];
    const want = keys.map(sysctlLine).join("");
    const lib = join(work, `sysctl-probe-${impl}-${sender}.sh`);
    writeFileSync(lib, scriptBody("sysctl-probe.sh"));
    const one = ["sh", "-c", `. "$0"; probe_sysctl me ${keys.join(" ")}`, lib];
    const words = Array.from({ length: 8 }, () => ["probe-bg", "0", String(one.length), ...one]);
    const argv = scriptArgv(scriptIn(__dirname, "../../provider/src/apply-batch.sh", words.flat()));
    for (let pass = 0; pass < 3; pass++) {
      const r = text(await shell.request(remoteShellRequest(argv), Buffer.alloc(0)));
      expect(r.code).toBe(0);
      const outs = r.stdout.split(/@@pulumi-hypervisor-probe \d+\n/).slice(1);
      expect(outs).toEqual(Array.from({ length: 8 }, () => want));
    }
  });

  it("has apply-batch.sh source its last probe in its own shell: no subshell, the same answers", async () => {
    const { shell } = startLocal(impl, sender);
    await shell.hello;
    // a child's $PPID names the shell that forked it: the batch's own, or a probe's subshell
    const kept = {
      hash: "89abcdef0123456789abcdef01234567",
      body: 'sh -c \'echo "$0 $PPID"\' "$1"\ni=7 probed=x\nexit 5\n',
    };
    const batch = (last: string[]) =>
      argvWithCachedScripts(
        scriptArgv(
          scriptIn(__dirname, "../../provider/src/apply-batch.sh", [
            ...["0", "0", "4", "sh", "-c", 'echo "step $PPID"', "x"],
            ...["probe", "0", "3", ".", kept.hash, "first"],
            ...last,
          ]),
        ),
      );
    const { argv, scripts } = batch(["probe", "0", "3", ".", kept.hash, "last"]);
    const r = text(
      await shell.request(remoteShellRequest(argv), Buffer.alloc(0), [...scripts, kept]),
    );
    expect(r.code).toBe(0);
    const ppid = (what: string) => new RegExp(`^${what} (\\d+)$`, "m").exec(r.stdout)?.[1];
    expect(ppid("step")).toMatch(/^\d+$/);
    // the first probe in a subshell of the batch's shell, the last in that shell itself
    expect(ppid("first")).not.toBe(ppid("step"));
    expect(ppid("last")).toBe(ppid("step"));
    // each exit code its own, under the probe's index, whatever the probe set
    expect(r.stderr.match(/@@pulumi-hypervisor-probed \d \d+/g)).toEqual([
      "@@pulumi-hypervisor-probed 1 5",
      "@@pulumi-hypervisor-probed 2 5",
    ]);
    // a signal to the batch's shell while its last probe runs: no exit code for the probe, and
    // the batch fails, as when a probe's subshell is killed
    const hup = {
      hash: "fedcba9876543210fedcba9876543210",
      body: "sh -c 'kill -HUP $PPID'\necho after\n",
    };
    const h = batch(["probe", "0", "2", ".", hup.hash]);
    const killed = text(
      await shell.request(remoteShellRequest(h.argv), Buffer.alloc(0), [...h.scripts, kept, hup]),
    );
    expect(killed.code).toBe(129);
    expect(killed.stderr).toContain("@@pulumi-hypervisor-probed 1 5");
    expect(killed.stderr).not.toContain("@@pulumi-hypervisor-probed 2");
    expect(killed.stdout).not.toContain("after");
  });

  it("refuses a line request whose length does not match, running nothing", async () => {
    const { shell, child, exited } = startLocal(impl, sender);
    await shell.hello;
    const marker = join(work, `line-${impl}-${sender}`);
    child.stdin.write(`L 99 0 ${"a".repeat(32)}\ntouch ${marker}\n\n`);
    expect(await exited).toBe(2);
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses a request without a nonce of 32 hex digits, running nothing", async () => {
    for (const nonce of ["", "a".repeat(31), "A".repeat(32), `${"a".repeat(31)}'`]) {
      const { shell, child, exited } = startLocal(impl, sender);
      await shell.hello;
      const marker = join(work, `nonce-${impl}-${sender}`);
      const cmd = `touch ${marker}`;
      child.stdin.write(`L ${cmd.length} 0 ${nonce}\n${cmd}\n\n`);
      expect(await exited).toBe(2);
      expect(existsSync(marker)).toBe(false);
    }
  });

  it("keeps the reply's nonce from the command: output cannot end a reply early", async () => {
    const writes: Buffer[] = [];
    const { shell } = startLocal(impl, sender, writes);
    await shell.hello;
    // every variable and function the command can see, then a mark after them
    const r = text(await shell.request('set; printf "%s|" "${nonce-unset}"', Buffer.alloc(0)));
    const frame = writes.map((w) => w.toString("latin1")).find((w) => w.startsWith("L "));
    const nonce = /^L \d+ 0 ([0-9a-f]{32})\n/.exec(frame ?? "")?.[1];
    expect(nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(r.stdout.endsWith("unset|")).toBe(true);
    expect(r.stdout).not.toContain(nonce);
    expect(text(await run(shell, ["echo", "next"])).stdout).toBe("next\n");
  });

  it("never runs a request cut short, and removes its directory when its input ends", async () => {
    const dirs = (): string[] => readdirSync(work).filter((f) => f.startsWith("tmp"));
    const marker = join(work, `cut-${impl}-${sender}`);
    const frame = encodeRequest(`touch ${marker}`, Buffer.from("data"), "f".repeat(32));
    // a line request ("L ..."): cut before its closing newline, and in its command line (which the
    // loop's perl reads at once, the shell's read a byte at a time)
    expect(frame.subarray(0, 2).toString()).toBe("L ");
    const mid = frame.indexOf("\n") + 5;
    for (const cut of [frame.length - 1, mid]) {
      const before = dirs();
      const { shell, child, exited } = startLocal(impl, sender);
      await shell.hello;
      // its private directory, in TMPDIR, named as mktemp -d names one (perl makes ten letters or
      // digits, busybox's mktemp six), mode 0700; the others only go (a killed loop's, by its perl)
      const added = dirs().filter((f) => !before.includes(f));
      expect(added).toHaveLength(1);
      expect(added[0]).toMatch(/^tmp\.[A-Za-z0-9]{6,}$/);
      const dir = join(work, added[0] ?? "");
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      child.stdin.write(frame.subarray(0, cut));
      child.stdin.end();
      expect(await exited).toBe(0);
      expect(existsSync(marker)).toBe(false);
      // gone once the loop is: by its perl, when it starts, else by rm
      expect(existsSync(dir)).toBe(false);
    }
  });

  it("makes and removes its directory and fifos from its perl where perl starts, else by mktemp and rm", async () => {
    // a PATH whose mktemp, mkfifo and rm note each start, then run
    const log = join(work, `setup-log-${impl}-${sender}`);
    const spy = spyOn(`setup-spy-${impl}-${sender}`, ["mktemp", "mkfifo", "rm"], log);
    const before = readdirSync(work).filter((f) => f.startsWith("tmp"));
    const { shell, child, exited } = startLocal(
      impl,
      sender,
      undefined,
      `${spy}:${pathFor(sender)}`,
    );
    await shell.hello;
    expect(text(await run(shell, ["echo", "x"])).stdout).toBe("x\n");
    const added = readdirSync(work).filter((f) => f.startsWith("tmp") && !before.includes(f));
    expect(added).toHaveLength(1);
    const fifos = ["ka", "kq", "kt", "ra", "rq"];
    const made = readdirSync(join(work, added[0] ?? "")).filter((f) => fifos.includes(f));
    expect(made.sort()).toEqual(sender === "perl" ? fifos : []);
    child.stdin.end();
    expect(await exited).toBe(0);
    expect(existsSync(join(work, added[0] ?? ""))).toBe(false);
    // the loop's own (bash started on a socket runs ~/.bashrc, whatever that starts)
    const ran = (existsSync(log) ? readFileSync(log, "utf8").split("\n") : [])
      .filter((l) => l === "mktemp -d" || l.includes(`${work}/tmp.`))
      .map((l) => l.split(" ")[0]);
    // (busybox runs its own mktemp and rm, which the PATH does not see)
    expect(ran).toEqual(sender === "perl" || impl === "busybox" ? [] : ["mktemp", "rm"]);
  });

  it("exits 3 before its hello when it cannot set up, saying why on stderr", async () => {
    const argv = impl === "busybox" ? ["busybox", "sh"] : [impl];
    const child = spawn(
      argv[0] ?? "sh",
      [...argv.slice(1), "-c", remoteShellScript(), "remote-shell.sh", "a b c d"],
      { env: { PATH: pathFor(sender), TMPDIR: join(work, "no-such-dir") }, cwd: work },
    );
    started.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code).toBe(3);
    // no hello: the client never sends a request to a loop that cannot read it
    expect(stdout).toBe("");
    // (bash started on a socket, as Node's pipes are, may say more first: it reads ~/.bashrc)
    expect(stderr).toMatch(/(^|\n)remote-shell\.sh: no private directory \(mktemp -d failed\)\n$/);
  });

  it("appends a start line, lengths and exit codes only to the trace file", () => {
    // the trace path is fixed on hosts (/run/pulumi-hypervisor, the lab test uses it); here the
    // lines the loop writes there
    const body = readFileSync(join(__dirname, "../../provider/src", REMOTE_SHELL_SCRIPT), "utf8");
    expect(body).toContain(`printf '%s shell\\n' "$up" >>"$trace"`);
    expect(body).toContain(`printf '%s %s %s %s\\n' "$up" "$clen" "$slen" "$code" >>"$trace"`);
    // the time comes from a builtin read of /proc/uptime: counting starts no process
    expect(body.match(/read -r up _ <\/proc\/uptime/g)).toHaveLength(2);
    expect(body).not.toContain("date +%s");
    expect(body.match(/>>"\$trace"/g)).toHaveLength(2);
  });
});

describe("remoteShellCommand", () => {
  it("expands $SSH_CONNECTION in the login shell, outside any sudo prefix", () => {
    const cmd = remoteShellCommand(["sudo", "-n", "--"]);
    expect(cmd.startsWith("sudo -n -- sh -c '")).toBe(true);
    expect(cmd.endsWith(`' remote-shell.sh "$SSH_CONNECTION"`)).toBe(true);
  });

  it("fits an exec request in the 32 KB payload every SSH server takes, without the loop's comments and indentation", () => {
    // the longest prefix the provider sends (sudo -S with its prompt marks), and the request's own
    // fields: message type, channel, "exec", want-reply and the command's length
    const cmd = remoteShellCommand(["sudo", "-S", "-p", "x".repeat(80), "--"]);
    expect(Buffer.byteLength(cmd) + 1 + 4 + 4 + 4 + 1 + 4).toBeLessThanOrEqual(32768);
    // only comment lines, blank lines and indentation go: every other line of the file (its
    // includes inlined) stays, in order
    const lines = scriptBody(REMOTE_SHELL_SCRIPT).split("\n");
    const code = lines.map((l) => l.trimStart()).filter((l) => l !== "" && !l.startsWith("#"));
    expect(remoteShellScript().split("\n")).toEqual(code);
    // which is safe while no line continues another with a backslash, and no line is inside a
    // string but the perl program's (perl -e '...'), whose lines have no strings of several lines
    expect(code.filter((l) => l.endsWith("\\"))).toEqual([]);
    const unbalanced = code.filter((l) => {
      const bare = l.replace(/\\./g, "");
      return (bare.split("'").length - 1) % 2 === 1 || (bare.split('"').length - 1) % 2 === 1;
    });
    expect(unbalanced.map((l) => l.trim())).toEqual([
      "said=$(perl -e '",
      `' "$base" "$locks" "$$" 4>&1 >&7 7>&- 2>/dev/null &)`,
    ]);
  });
});

describe("argvWithCachedScripts", () => {
  const hashOf = (argv: readonly string[]): string =>
    /^\. "\$PULUMI_HYPERVISOR_SCRIPTS\/([0-9a-f]{32})"$/.exec(argv[2] ?? "")?.[1] ?? "";

  it("runs any other kept script as a program of its own, never in the loop's shell", () => {
    const { argv } = argvWithCachedScripts(lockReleaseArgv("00ff"));
    expect(remoteShellRequest(argv)).toMatch(/^exec sh -c '\. "\$PULUMI_HYPERVISOR_SCRIPTS/);
    expect(remoteShellRequest(["sh", "-c", "echo", "lock-check.sh"])).toBe(
      "exec sh -c echo lock-check.sh",
    );
  });

  it("refers to a provider script's body by hash and leaves its arguments as they are", () => {
    const argv = lockReleaseArgv("00ff");
    const { argv: out, scripts } = argvWithCachedScripts(argv);
    expect(out.slice(0, 2)).toEqual(["sh", "-c"]);
    expect(out.slice(3)).toEqual(argv.slice(3));
    // kept without comments, blank lines and indentation (host/shell-compact.ts)
    expect(scripts).toEqual([{ hash: hashOf(out), body: compactShell(argv[2] ?? "") }]);
  });

  it("leaves any other command alone, a shell one-liner included", () => {
    const argv = ["sh", "-c", 'echo "$1"', "x", "y"];
    expect(argvWithCachedScripts(argv)).toEqual({ argv, scripts: [] });
    expect(argvWithCachedScripts(["ip", "link"])).toEqual({ argv: ["ip", "link"], scripts: [] });
  });

  it("goes into the commands that apply-batch.sh runs at once, and no further", () => {
    const probe = scriptArgv(scriptIn(__dirname, "../../provider/src/host/lock-release.sh", ["1"]));
    const argv = probeBatchArgv([{ argv: probe, shown: ["probe"] }]);
    const { argv: out, scripts } = argvWithCachedScripts(argv);
    expect(scripts.map((s) => s.body)).toEqual(
      [argv[2], probe[2]].map((b) => compactShell(b ?? "")),
    );
    expect(out.join("\n")).not.toContain(probe[2] ?? "never");
    expect(out.length).toBe(argv.length);
  });
});
