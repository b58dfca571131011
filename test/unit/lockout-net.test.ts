// Plans that would cut the provider's own SSH session are refused before anything changes: a
// routed tap taking the SSH client's address, and a port forward of sshd's port on every
// interface (issue 11, lockouts 3 and 4).
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProbe } from "../../provider/src/host/probe";
import { scriptBody } from "../../provider/src/host/script";
import { sessionPortOf } from "../../provider/src/host/ssh-host";
import { parseNatRuleState } from "../../provider/src/resources/nat-rule/observe";
import { planNatRule } from "../../provider/src/resources/nat-rule/plan";
import { NatRuleInputs } from "../../provider/src/resources/nat-rule/schema";
import { parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { planTapDevice } from "../../provider/src/resources/tap-device/plan";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { tapProbeCapture } from "../support/tap-fixtures";

describe("a routed tap never takes the SSH client's address", () => {
  const host = (client: string) => ({
    ...parseTapDeviceState("vm5", tapProbeCapture("vm0")),
    sshClientAddress: client,
  });
  const d = (addresses: string[]) => TapDeviceInputs.parse({ name: "vm5", routed: { addresses } });

  it("refuses the client's IPv4 or IPv6 address, naming it and why", () => {
    expect(() => planTapDevice(d(["198.18.120.6", "198.18.7.9"]), host("198.18.7.9"))).toThrow(
      "routed.addresses: 198.18.7.9 is the address this SSH session comes from; a host route via vm5 would send the session's replies into the tap and cut the provider off. Remove it, or manage the host from another address",
    );
    expect(() => planTapDevice(d(["2001:DB8::9"]), host("2001:db8::9"))).toThrow(
      "routed.addresses: 2001:db8::9 is the address this SSH session comes from",
    );
  });

  it("routes other addresses as before", () => {
    expect(planTapDevice(d(["198.18.120.6"]), host("198.18.7.9")).map((s) => s.summary)).toContain(
      "add host route 198.18.120.6/32 via vm5",
    );
  });
});

describe("a port forward never takes sshd's port on every interface", () => {
  const state = (sshdPorts: string) =>
    parseNatRuleState(
      "guest",
      formatProbe([
        ["tools", "nft yes\niptables yes\n"],
        ["nft", ""],
        ["iptables", ""],
        ["sysctl", "net/ipv4/ip_forward 0 0\n"],
        ["sshd-ports", sshdPorts],
        ["systemd", "no\n"],
      ]),
    );
  const d = (forward: Record<string, unknown>) =>
    NatRuleInputs.parse({
      name: "guest",
      sourceCidr: "198.18.141.0/24",
      outInterface: "wan0",
      portForwards: [
        { protocol: "tcp", hostPort: 8080, destination: "198.18.141.10", destinationPort: 80 },
        { destination: "198.18.141.10", destinationPort: 22, ...forward },
      ],
    });

  it("refuses tcp to a port sshd listens on without inInterface", () => {
    expect(() => planNatRule(d({ protocol: "tcp", hostPort: 2222 }), state("22\n2222\n"))).toThrow(
      "portForwards[1]: sshd listens on tcp port 2222, and a forward of it without inInterface sends every login to the host on to 198.18.141.10, cutting the provider off; set inInterface to the interface the forward is for (not the one the host is managed through), or forward another port",
    );
  });

  it("refuses tcp to the port this SSH session came in on, where sshd's ports are not seen", () => {
    // a socket systemd holds for an sshd per connection, or a server not named sshd: no sshd port
    const seen = { ...state(""), sessionPort: 2022 };
    expect(() => planNatRule(d({ protocol: "tcp", hostPort: 2022 }), seen)).toThrow(
      "portForwards[1]: this SSH session came in on tcp port 2022, and a forward of it without inInterface sends every login to the host on to 198.18.141.10, cutting the provider off",
    );
    for (const f of [
      { protocol: "tcp", hostPort: 2022, inInterface: "guest0" },
      { protocol: "udp", hostPort: 2022 },
      { protocol: "tcp", hostPort: 22 },
    ]) {
      expect(planNatRule(d(f), seen).length, JSON.stringify(f)).toBe(2);
    }
  });

  it("reads the session's port from $SSH_CONNECTION, and nothing from a value without one", () => {
    expect(sessionPortOf("198.18.0.1 50122 198.18.1.2 2022\n")).toBe(2022);
    expect(sessionPortOf("2001:db8::1 50122 2001:db8::2 22")).toBe(22);
    for (const v of [
      undefined,
      "",
      "198.18.0.1 50122 198.18.1.2",
      "a b c 0",
      "a b c 65536",
      "a b c 22x",
    ]) {
      expect(sessionPortOf(v), String(v)).toBeUndefined();
    }
  });

  it("allows it on one inbound interface, over udp, or on a port sshd does not use", () => {
    for (const f of [
      { protocol: "tcp", hostPort: 22, inInterface: "guest0" },
      { protocol: "udp", hostPort: 22 },
      { protocol: "tcp", hostPort: 2200 },
    ]) {
      expect(planNatRule(d(f), state("22\n")).length, JSON.stringify(f)).toBe(2);
    }
  });

  // A proc tree and an `ss` of the test's own: sshd_ports (sshd-ports.sh) on known inodes.
  function sshdPorts(
    procs: { pid: number; comm: string; fds: Record<number, number | string> }[],
    ssLines: string[],
  ): { out: string; ssRan: boolean } {
    const dir = mkdtempSync(join(tmpdir(), "sshd-ports-"));
    try {
      for (const p of procs) {
        mkdirSync(join(dir, "proc", String(p.pid), "fdinfo"), { recursive: true });
        mkdirSync(join(dir, "proc", String(p.pid), "fd"));
        writeFileSync(join(dir, "proc", String(p.pid), "comm"), `${p.comm}\n`);
        for (const [fd, ino] of Object.entries(p.fds)) {
          // a number: fdinfo has its inode (Linux 5.14 and later); a path: it has none, and the
          // fd links to that file, whose inode stat reads
          const info = typeof ino === "number" ? `ino:\t${ino}\n` : "";
          writeFileSync(
            join(dir, "proc", String(p.pid), "fdinfo", fd),
            `pos:\t0\nflags:\t02\nmnt_id:\t9\n${info}`,
          );
          if (typeof ino === "string") symlinkSync(ino, join(dir, "proc", String(p.pid), "fd", fd));
        }
      }
      mkdirSync(join(dir, "bin"));
      writeFileSync(join(dir, "ss.out"), ssLines.join("\n"));
      writeFileSync(
        join(dir, "bin", "ss"),
        `#!/bin/sh\n[ "$*" = -Hltne ] || exit 9\n: >"${dir}/ss.ran"\ncat "${dir}/ss.out"\n`,
        { mode: 0o755 },
      );
      // the library with its own includes inlined, as the remote shell gets it
      const lib = scriptBody("resources/nat-rule/sshd-ports.sh");
      const out = execFileSync("sh", ["-c", `${lib}\nsshd_ports "$1"`, "sh", join(dir, "proc")], {
        cwd: dir,
        encoding: "utf8",
        env: { ...process.env, PATH: `${join(dir, "bin")}:${process.env["PATH"] ?? ""}` },
      });
      return { out, ssRan: existsSync(join(dir, "ss.ran")) };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("reads the ports that processes named sshd listen on from their own open files", () => {
    const { out } = sshdPorts(
      [
        { pid: 412, comm: "sshd", fds: { 3: 111, 4: 114, 5: 112 } },
        { pid: 77, comm: "cupsd", fds: { 7: 113 } },
        // a name that only starts like sshd's is another program
        { pid: 90, comm: "sshd-proxy", fds: { 3: 115 } },
      ],
      [
        "LISTEN 0      128          0.0.0.0:22        0.0.0.0:* ino:111 sk:1 cgroup:/system.slice/ssh.service <->",
        "LISTEN 0      128          0.0.0.0:2222      0.0.0.0:* ino:112 sk:2 cgroup:/a* <->",
        "LISTEN 0      4096       127.0.0.1:631       0.0.0.0:* uid:7 ino:113 sk:3 <->",
        "LISTEN 0      128        127.0.0.1:8022      0.0.0.0:* ino:115 sk:4 <->",
        // the last line without its newline
        "LISTEN 0      128             [::]:22           [::]:* ino:114 sk:5 <->",
      ],
    );
    // a port on both families comes twice; the parser keeps each once, in order
    expect(out).toBe("22\n2222\n22\n");
    expect(state(out).sshdPorts).toEqual([22, 2222]);
  });

  it("stats sshd's files where fdinfo has no inode (a kernel before 5.14)", () => {
    const file = join(tmpdir(), `sshd-ports-listener-${process.pid}`);
    writeFileSync(file, "");
    try {
      const ino = statSync(file).ino;
      const { out } = sshdPorts(
        [{ pid: 412, comm: "sshd", fds: { 3: file } }],
        [`LISTEN 0 128 0.0.0.0:2200 0.0.0.0:* ino:${ino} sk:1 <->`],
      );
      expect(out).toBe("2200\n");
    } finally {
      rmSync(file, { force: true });
    }
  });

  it("runs no ss when no process is named sshd", () => {
    const r = sshdPorts(
      [{ pid: 77, comm: "cupsd", fds: { 7: 113 } }],
      ["LISTEN 0 4096 127.0.0.1:631 0.0.0.0:* ino:113 sk:3 <->"],
    );
    expect(r).toEqual({ out: "", ssRan: false });
  });
});

describe("procs_named (host/procs-named.sh)", () => {
  it("finds processes by their exact name, with grep and with the shell's reads without it", () => {
    const dir = mkdtempSync(join(tmpdir(), "procs-named-"));
    try {
      for (const [pid, comm] of [
        [412, "sshd"],
        [77, "cupsd"],
        [90, "sshd-proxy"],
        [501, "sshd"],
      ] as const) {
        mkdirSync(join(dir, String(pid)));
        writeFileSync(join(dir, String(pid), "comm"), `${comm}\n`);
      }
      const lib = scriptBody("host/procs-named.sh");
      const found = (path: string): string =>
        execFileSync("/bin/sh", ["-c", `${lib}\nprocs_named sshd "$1"; echo $procs`, "sh", dir], {
          encoding: "utf8",
          env: { ...process.env, PATH: path },
        }).trim();
      const want = `${dir}/412 ${dir}/501`;
      expect(found(process.env["PATH"] ?? "")).toBe(want);
      // no grep on the PATH: every command the fallback needs is the shell's own
      expect(found(join(dir, "no-such-bin"))).toBe(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
