// The bench's report and parsing code: tool ratios and verdicts, round trips from the request
// trace or sshd, Ansible's recap, the floor's script, cgroup and host-state parsing.
import { describe, expect, it } from "vitest";
import { cgroup2Mount, parseCpuStat, parseProcStatBusyUs } from "../../bench/cgroup";
import type { OpRecord, RunResult } from "../../bench/driver";
import { hostJob } from "../../bench/job";
import { parseBenchArgs, type Mode } from "../../bench/options";
import {
  ansibleConfig,
  ansibleFailures,
  floorScript,
  recapChanged,
  type PeerResult,
} from "../../bench/peers";
import {
  baselineRatios,
  controllerCpuPerOp,
  machineLine,
  medianAndEach,
  renderReport,
  roundTrips,
} from "../../bench/report";
import { normalizeState, stateDiff } from "../../bench/state";

const op = (o: Partial<OpRecord>): OpRecord => ({
  phase: "create",
  type: "Bridge",
  op: "create",
  sessions: 4,
  connections: 0,
  requests: 0,
  ms: 100,
  ...o,
});

function run(mode: Mode, delayMs: number, createMs: number): RunResult {
  const phase = (p: "create" | "refresh" | "destroy", wallMs: number, cpuUs: number) => ({
    phase: p,
    wallMs,
    connections: p === "create" ? 1 : 0,
    sessions: 10,
    ops: 5,
    controllerCpuUs: cpuUs,
    hostCpuUs: 2 * cpuUs,
  });
  return {
    mode,
    schedule: "serial",
    delayMs,
    hosts: 1,
    resources: 5,
    phases: [
      phase("create", createMs, 20_000),
      phase("refresh", createMs / 4, 5_000),
      phase("destroy", createMs, 15_000),
    ],
    connectionsPerHost: [1],
    ops: [
      op({ op: "create", sessions: 4, requests: 2 }),
      op({ op: "read", phase: "refresh", sessions: 1, requests: 1 }),
      op({ op: "delete", phase: "destroy", sessions: 4, requests: 2 }),
    ],
    startMs: 600,
    controllerStartCpuUs: 500_000,
    refreshChanges: [],
  };
}

const ansible = (
  delayMs: number,
  applyMs: number,
  noopMs: number,
  changed: number,
): PeerResult => ({
  peer: "ansible-tuned",
  delayMs,
  apply: { wallMs: applyMs, connections: 1, sessions: 40, controllerCpuUs: 4e6, changed: 9 },
  noop: { wallMs: noopMs, connections: 0, sessions: 10, controllerCpuUs: 2e6, changed },
});

describe("bench report", () => {
  it("counts round trips from the request trace when the hosts wrote one, else sessions", () => {
    expect(roundTrips(op({ sessions: 4, requests: 2 }), true)).toBe(2);
    expect(roundTrips(op({ sessions: 4, requests: 0 }), false)).toBe(4);
  });

  it("prints the host's CPU per operation type when every operation has it, else no column", () => {
    const opts = { ...parseBenchArgs(["--quick"]), delays: [20] };
    const timed = run("pooled", 20, 1000);
    timed.ops = [
      op({ op: "create", type: "TapDevice", hostCpuUs: 12_000 }),
      op({ op: "create", type: "TapDevice", hostCpuUs: 14_000 }),
      op({ op: "create", type: "TapDevice", hostCpuUs: 30_000 }),
      op({ op: "delete", type: "TapDevice", phase: "destroy", hostCpuUs: 17_500 }),
    ];
    const text = renderReport(opts, [timed], [], []);
    expect(text).toContain("| median host CPU ms |");
    expect(text).toMatch(/^\| create TapDevice +\| 3 +\|.*\| 14\.0 +\|$/m);
    expect(text).toMatch(/^\| delete TapDevice +\| 1 +\|.*\| 17\.5 +\|$/m);
    // one operation without it (no CPU accounting): the table has no such column
    timed.ops = [...timed.ops, op({ op: "read", type: "TapDevice", phase: "refresh" })];
    const without = renderReport(opts, [timed], [], []);
    expect(without).toContain("| median ms |");
    expect(without).not.toContain("host CPU ms");
  });

  it("returns controller CPU per operation over the pooled runs only", () => {
    // pooled: 40 ms of CPU over 15 operations
    expect(controllerCpuPerOp([run("pooled", 0, 1000), run("per-command", 0, 3000)])).toBeCloseTo(
      40 / 15,
    );
    const noCpu = run("pooled", 0, 1000);
    noCpu.phases = noCpu.phases.map(({ controllerCpuUs: _c, ...p }) => p);
    expect(controllerCpuPerOp([noCpu])).toBeUndefined();
  });

  it("compares each run's controller CPU with the baseline code's at the same delays and schedules", () => {
    // a run's controller CPU scaled: run() gives 40 ms over 15 operations
    const cpu = (r: RunResult, k: number, trial: number): RunResult => ({
      ...r,
      trial,
      phases: r.phases.map((p) => ({ ...p, controllerCpuUs: (p.controllerCpuUs ?? 0) * k })),
    });
    const runs = [1, 2, 3].flatMap((trial, i) => [
      cpu(run("pooled", 20, 1000), 1, trial),
      cpu(run("baseline", 20, 3000), [2.5, 1.8, 2.1][i]!, trial),
      // a pooled run the baseline did not run beside: left out of the pairs
      cpu(run("pooled", 0, 1000), 10, trial),
    ]);
    const r = baselineRatios(runs, [1, 2, 3]);
    expect(r?.ratios.map((x) => x.toFixed(1))).toEqual(["2.5", "1.8", "2.1"]);
    expect(r?.pooled[0]).toBeCloseTo(40 / 15);
    const opts = { ...parseBenchArgs(["--quick"]), delays: [0, 20], repeat: 3 };
    const text = renderReport(opts, runs);
    expect(text).toContain(
      "target: controller CPU per resource operation halved against the baseline code in the " +
        "same runs: met (median 2.1x; runs 2.5x, 1.8x, 2.1x; 2.7 ms against 5.6 ms)",
    );
    expect(text).toContain("the baseline code (commit 45cff3f6db92, before the CPU work)");
    // a trial without the baseline: no ratio, and the figure recorded on the first day instead
    expect(baselineRatios(runs.slice(0, 6), [1, 2, 3])).toBeUndefined();
    const alone = renderReport(opts, [cpu(run("pooled", 20, 1000), 1, 1)]);
    expect(alone).toContain(
      "target: controller CPU per resource operation halved (<= 4.8 ms, was 9.6 ms on the " +
        "machine of 2026-11-30; --modes baseline measures it beside today's code): met (2.7 ms)",
    );
  });

  it("gives no figure and no verdict for a bench that failed before its first run", () => {
    const text = renderReport({ ...parseBenchArgs(["--quick"]), delays: [20] }, []);
    expect(text).not.toContain("target:");
    expect(text).not.toContain("controller CPU per resource operation");
  });

  it("prints the tools, their ratios and a verdict per target", () => {
    const opts = { ...parseBenchArgs(["--quick"]), delays: [0, 20] };
    const floor: PeerResult = {
      peer: "floor",
      delayMs: 20,
      apply: { wallMs: 400, connections: 1, sessions: 1 },
    };
    const text = renderReport(
      opts,
      [run("pooled", 0, 1000), run("pooled", 20, 1000), run("per-command", 20, 6000)],
      [ansible(0, 5000, 2000, 0), ansible(20, 3000, 500, 0), floor],
      [
        { tool: "provider pooled serial", delayMs: 0, same: true },
        { tool: "ansible-tuned", delayMs: 0, same: true },
        { tool: "floor", delayMs: 20, same: false },
      ],
    );
    expect(text).toContain(
      "target: at least 4x faster than Ansible tuned on the first apply at 0 ms: met (5.0x)",
    );
    expect(text).toContain(
      "target: at least 4x faster than Ansible tuned on the checking no-op at 0 ms: met (8.0x)",
    );
    expect(text).toContain(
      "target: at least 4x faster than Ansible tuned on the first apply at 20 ms: MISSED (3.0x)",
    );
    expect(text).toContain(
      "target: first apply within 2x of the floor at 20 ms (without the plugin's 0.60 s " +
        "start-up): MISSED (2.5x)",
    );
    expect(text).toContain(
      "target: at least 5x faster than connection-per-command at 20 ms (serial): met (6.0x",
    );
    expect(text).toContain(
      "target: 2 round trips per create/update/delete, counted on the hosts (trace requests + plain sessions): met",
    );
    expect(text).toContain(
      "check: every tool leaves the provider's host state: NO (floor at 20 ms)",
    );
    expect(text).toContain("check: ansible-tuned second run at 0 ms reports changed=0: idempotent");
    // the per-operation table from the largest delay's serial pooled run
    expect(text).toContain("serial pooled at 20 ms (the first operation on a host may add one)");
    expect(text).toMatch(/\| 0 ms +\| ansible-tuned +\| - +\| 5\.00 +\| 2\.00 +\| 4\.00 \/ 2\.00/);
  });

  it("with several runs (--repeat), tables show medians and a target the median of the runs' own ratios", () => {
    const opts = { ...parseBenchArgs(["--quick"]), delays: [20], repeat: 3 };
    // per run: pooled create 1000/1000/1300 ms, per-command 6000/4000/6500, floor 500/400/600
    const pooled = [1000, 1000, 1300];
    const fresh = [6000, 4000, 6500];
    const floors = [500, 400, 600];
    const runs = [1, 2, 3].flatMap((trial, i) => [
      { ...run("pooled", 20, pooled[i]!), trial },
      { ...run("per-command", 20, fresh[i]!), trial },
    ]);
    const peers: PeerResult[] = floors.map((wallMs, i) => ({
      peer: "floor",
      delayMs: 20,
      apply: { wallMs, connections: 1, sessions: 1 },
      trial: i + 1,
    }));
    const text = renderReport(opts, runs, peers, [
      { tool: "floor", delayMs: 20, same: true },
      { tool: "floor", delayMs: 20, same: false },
    ]);
    // ratios per run: 6.0x, 4.0x, 5.0x -> median 5.0x (met), not the ratio of the medians
    expect(text).toContain(
      "target: at least 5x faster than connection-per-command at 20 ms (serial): met " +
        "(median 5.0x; runs 6.0x, 4.0x, 5.0x over create + refresh + destroy)",
    );
    // apply over the floor of the same run: 2.0x, 2.5x, 2.2x -> median 2.2x
    expect(text).toMatch(
      /target: first apply within 2x of the floor at 20 ms \(without the plugin's 0\.60 s start-up\): MISSED \(median 2\.2x; runs 2\.0x, 2\.5x, 2\.2x\)/,
    );
    // the pooled create's median wall time, and the floor's, in the tables
    expect(text).toMatch(/\| 20 ms +\| serial +\| pooled +\| create +\| 1\.00 /);
    expect(text).toMatch(/\| 20 ms +\| floor +\| - +\| 0\.50 /);
    // one run that left another state is enough for NO
    expect(text).toContain(
      "check: every tool leaves the provider's host state: NO (floor at 20 ms)",
    );
    expect(text).toContain("3 runs of each provider mode and of the floor");
  });

  it("prints the bytes the relays passed on each way, the median over runs, none at 0 ms", () => {
    const opts = { ...parseBenchArgs(["--quick"]), delays: [0, 20], repeat: 3 };
    const withBytes = (r: RunResult, toHosts: number, trial: number): RunResult => ({
      ...r,
      trial,
      phases: r.phases.map((p) =>
        p.phase === "create" ? { ...p, bytesToHosts: toHosts, bytesFromHosts: toHosts / 10 } : p,
      ),
    });
    const runs = [1, 2, 3].flatMap((trial) => [
      { ...run("pooled", 0, 1000), trial },
      withBytes(run("pooled", 20, 1000), [300_000, 900_000, 310_000][trial - 1]!, trial),
    ]);
    const floors: PeerResult[] = [1, 2, 3].map((trial) => ({
      peer: "floor",
      delayMs: 20,
      apply: { wallMs: 500, connections: 1, sessions: 1, bytesToHosts: 30_000 + trial * 1000 },
      trial,
    }));
    const text = renderReport(opts, runs, floors);
    // the tools' table: the apply's bytes to the hosts (the no-op's: none here)
    expect(text).toMatch(/\| 20 ms +\| floor +\|.*\| 32 \/ - +\|/);
    expect(text).toMatch(/\| 20 ms +\| provider pooled serial +\|.*\| 310 \/ - +\|/);
    expect(text).toMatch(/\| 0 ms +\| provider pooled serial +\|.*\| - \/ - +\|/);
    const row = (delay: string, phase: string): string =>
      text
        .split("\n")
        .find((l) => new RegExp(`^\\| ${delay} +\\| serial +\\| pooled +\\| ${phase} `).test(l)) ??
      "";
    expect(row("20 ms", "create")).toMatch(/\| 310 \/ 31 +\|$/);
    // a phase without the figure (here the refresh) leaves it out of its row and of the total
    expect(row("20 ms", "refresh")).toMatch(/\| - +\|$/);
    expect(row("20 ms", "total")).toMatch(/\| - +\|$/);
    expect(row("0 ms", "create")).toMatch(/\| - +\|$/);
    expect(text).toContain("KB to / from hosts = what the relays that add the delay passed on");
  });

  it("says when the links were limited, beside the targets, and names the compressed mode", () => {
    const opts = {
      ...parseBenchArgs(["--quick", "--bandwidth", "2", "--modes", "pooled,compressed"]),
      delays: [20],
    };
    const text = renderReport(opts, [run("pooled", 20, 1000), run("compressed", 20, 800)]);
    expect(text).toContain("each direction of a delayed link carries at most 2 Mbit/s");
    expect(text).toContain("note: the delayed links carried at most 2 Mbit/s each way");
    expect(text).toContain("mode compressed: pooled, every connection with compression: true");
    expect(text).toMatch(/\| 20 ms \| serial +\| compressed \| create /);
    const plain = renderReport({ ...parseBenchArgs(["--quick"]), delays: [20] }, []);
    expect(plain).not.toContain("Mbit/s");
  });

  it("flags a second Ansible run that changed something", () => {
    const text = renderReport(
      parseBenchArgs(["--quick"]),
      [run("pooled", 0, 1000)],
      [ansible(0, 5000, 2000, 3)],
    );
    expect(text).toContain(
      "check: ansible-tuned second run at 0 ms reports changed=3: NOT idempotent",
    );
  });
});

describe("bench tools", () => {
  it("sums changed= over Ansible's PLAY RECAP", () => {
    const out = [
      "TASK [x] ***",
      "changed: [h1]",
      "PLAY RECAP *********",
      "h1 : ok=12   changed=3    unreachable=0    failed=0    skipped=2",
      "h2 : ok=12   changed=4    unreachable=0    failed=0    skipped=2",
    ].join("\n");
    expect(recapChanged(out)).toBe(7);
    expect(recapChanged("no recap")).toBeUndefined();
  });

  it("keeps what failed from Ansible's output, cut short, with the recap", () => {
    const out = [
      "TASK [Create taps] ***",
      'failed: [h3] (item={"name": "btap10"}) => {"changed": false, "msg": "Failed to connect to the host via ssh: kex_exchange_identification: closed", "unreachable": true}',
      "ok: [h4]",
      "PLAY RECAP ***",
      "h3 : ok=6 changed=4 unreachable=1 failed=0",
    ].join("\n");
    expect(ansibleFailures(out)).toBe(
      'failed: [h3] (item={"name": "btap10"})  msg: Failed to connect to the host via ssh: ' +
        "kex_exchange_identification: closed\nPLAY RECAP ***\nh3 : ok=6 changed=4 unreachable=1 failed=0\n",
    );
  });

  it("configures Ansible tuned (pipelining, ControlPersist) or with its defaults", () => {
    const tuned = ansibleConfig("ansible-tuned", "/tmp/cp");
    expect(tuned).toContain("pipelining = True");
    expect(tuned).toContain("ssh_args = -o ControlMaster=auto -o ControlPersist=60s");
    const defaults = ansibleConfig("ansible-defaults", "/tmp/cp");
    expect(defaults).not.toContain("pipelining");
    expect(defaults).not.toContain("ssh_args");
  });

  it("writes the floor's one script with the provider's own dnsmasq config and nft ruleset", () => {
    const script = floorScript(hostJob("198.18.128", 5));
    expect(script.split("\n")[0]).toBe("set -e");
    expect(script).toContain(
      "ip link add name bbr0 type bridge\nip addr add 198.18.128.1/26 dev bbr0",
    );
    expect(script).toContain("ip tuntap add dev btap1 mode tap\nip link set dev btap1 master bbr0");
    expect(script).toContain("dhcp-range=198.18.128.10,198.18.128.50,255.255.255.192,1h");
    expect(script).toContain('oifname "wan0" ip saddr 198.18.128.0/24 masquerade');
    expect(script).toContain(
      "dnsmasq --conf-file=/etc/pulumi-hypervisor/dnsmasq/bbr0/dnsmasq.conf",
    );
  });

  it("reads cgroup2's mount point and usage_usec", () => {
    expect(
      cgroup2Mount(
        "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
      ),
    ).toBe("/sys/fs/cgroup/unified");
    expect(cgroup2Mount("proc /proc proc rw 0 0\n")).toBeUndefined();
    expect(parseCpuStat("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n")).toBe(1234);
    expect(() => parseCpuStat("nr_periods 0\n")).toThrow("cpu.stat has no usage_usec");
  });

  it("reads the machine's busy time from /proc/stat, without idle, iowait and steal", () => {
    // user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 10 ms
    expect(
      parseProcStatBusyUs("cpu  300 1 200 9000 50 4 5 70 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"),
    ).toBe(510 * 10_000);
    expect(() => parseProcStatBusyUs("intr 1 2 3\n")).toThrow("/proc/stat has no cpu line");
  });

  it("says how busy an apply kept the machine, and whose CPU that was", () => {
    const row = (machineCpuUs?: number) => ({
      tool: "floor",
      delayMs: 20,
      apply: {
        wallMs: 1500,
        controllerCpuUs: 300_000,
        hostCpuUs: 1_200_000,
        ...(machineCpuUs !== undefined ? { machineCpuUs } : {}),
        connections: 3,
        sessions: 3,
      },
      noop: undefined,
    });
    expect(machineLine(row(2_250_000), 2)).toBe(
      "floor apply kept the machine's 2 CPUs 75% busy (2.25 CPU-s in 1.50 s: hosts 1.20, its controller 0.30, the rest 0.75)",
    );
    expect(machineLine(row(), 2)).toBeUndefined();
  });

  it("normalizes a host's state: only the job's links, sorted, without MACs or ids", () => {
    const links = JSON.stringify([
      { ifname: "lo", flags: ["UP"], mtu: 65536, addr_info: [] },
      {
        ifname: "btap0",
        flags: ["BROADCAST", "UP"],
        mtu: 1500,
        master: "bbr0",
        address: "aa:bb:cc:dd:ee:ff",
        linkinfo: { info_kind: "tun", info_data: { type: "tap", pi: false, persist: true } },
        addr_info: [{ local: "fe80::1", prefixlen: 64, scope: "link" }],
      },
      {
        ifname: "bbr0",
        flags: ["UP"],
        mtu: 1500,
        linkinfo: { info_kind: "bridge", info_data: { stp_state: 0, hello_timer: 12 } },
        addr_info: [{ local: "198.18.128.1", prefixlen: 26, scope: "global" }],
      },
    ]);
    const raw = `## links\n${links}\n\n## nft\ntable ip t {\n}\n## ip_forward\n1\n## dnsmasq\n`;
    const state = normalizeState(raw);
    expect(state.split("\n").slice(0, 2)).toEqual([
      "link bbr0 kind=bridge master=- up=true mtu=1500 stp_state=0 addresses=198.18.128.1/26",
      'link btap0 kind=tun master=bbr0 up=true mtu=1500 type="tap" pi=false persist=true addresses=',
    ]);
    expect(state).toContain("nft:\ntable ip t {\n}\nip_forward: 1\ndnsmasq:\n");
    expect(stateDiff(state, state)).toBe("");
    expect(stateDiff(state, state.replace("up=true", "up=false"))).toContain("up=false");
  });
});

describe("medianAndEach", () => {
  it("gives the median (of the middle two for an even count), then each run in its order", () => {
    expect(medianAndEach([3.14159, 1, 2], 2)).toBe("2.00 (3.14, 1.00, 2.00)");
    expect(medianAndEach([4, 1, 3, 2], 0)).toBe("3 (4, 1, 3, 2)");
  });
});
