// Merged `ip` steps on the real iproute2 (root): apply-batch.sh feeds them to one `ip -batch -`
// inside a throwaway network namespace, and a failing line is reported as its own step.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applySteps } from "../../provider/src/apply";
import { CommandError, StepError } from "../../provider/src/errors";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { LINK_MARKER, markLinkStep } from "../../provider/src/link-marker";
import type { Step } from "../../provider/src/step";

const NS = `pht-${process.pid}`;

function sh(argv: readonly string[], stdin?: string | Buffer): RunResult {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd!, args, { input: stdin ?? "", encoding: "utf8" });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs each command inside the namespace, recording it. */
class NamespaceHost implements Host {
  readonly label = `root@${NS}:22`;
  readonly ran: (readonly string[])[] = [];
  async run(req: RunRequest): Promise<RunResult> {
    this.ran.push(req.argv);
    return sh(["ip", "netns", "exec", NS, ...req.argv], req.stdin);
  }
}

interface Link {
  ifname: string;
  ifindex: number;
  flags: string[];
  ifalias?: string;
  master?: string;
}

function links(): Link[] {
  const r = sh(["ip", "netns", "exec", NS, "ip", "-j", "link", "show"]);
  expect(r.exitCode).toBe(0);
  return (JSON.parse(r.stdout) as Link[]).filter((l) => l.ifname !== "lo");
}

const link = (name: string): Link | undefined => links().find((l) => l.ifname === name);
const ip = (summary: string, ...words: string[]): Step => ({ summary, argv: ["ip", ...words] });

beforeAll(() => {
  expect(sh(["ip", "netns", "add", NS]).exitCode).toBe(0);
});

afterAll(() => {
  sh(["ip", "netns", "del", NS]);
});

describe("merged ip steps on the real ip", () => {
  it("create a marked bridge and a tap on it in one command; words with spaces arrive whole", async () => {
    const host = new NamespaceHost();
    await applySteps(host, [
      ip("create br0", "link", "add", "name", "br0", "type", "bridge", "stp_state", "0"),
      markLinkStep("br0"),
      ip("up br0", "link", "set", "dev", "br0", "up"),
      ip("create t0", "tuntap", "add", "dev", "t0", "mode", "tap", "user", "0"),
      markLinkStep("t0"),
      ip("attach t0", "link", "set", "dev", "t0", "master", "br0"),
      ip("up t0", "link", "set", "dev", "t0", "up"),
      ip("create br9", "link", "add", "name", "br9", "type", "bridge"),
      ip("alias br9", "link", "set", "dev", "br9", "alias", "made by me"),
    ]);
    expect(host.ran).toHaveLength(1);
    expect(host.ran[0]![3]).toBe("apply-batch.sh");
    const br0 = link("br0");
    const t0 = link("t0");
    expect([br0?.ifalias, br0?.flags.includes("UP")]).toEqual([LINK_MARKER, true]);
    expect([t0?.ifalias, t0?.master, t0?.flags.includes("UP")]).toEqual([LINK_MARKER, "br0", true]);
    expect(link("br9")?.ifalias).toBe("made by me");
  });

  it("recreate a link and set it up in one command (ip looks the name up afresh)", async () => {
    const before = link("br0")?.ifindex;
    await applySteps(new NamespaceHost(), [
      ip("delete br0", "link", "del", "dev", "br0"),
      ip("create br0", "link", "add", "name", "br0", "type", "bridge"),
      markLinkStep("br0"),
      ip("up br0", "link", "set", "dev", "br0", "up"),
    ]);
    const br0 = link("br0");
    expect(before).toBeDefined();
    expect(br0?.ifindex).not.toBe(before);
    expect([br0?.ifalias, br0?.flags.includes("UP")]).toEqual([LINK_MARKER, true]);
  });

  it("report a failing middle line as its own step, and run none after it", async () => {
    const host = new NamespaceHost();
    const err = await applySteps(host, [
      ip("create br1", "link", "add", "name", "br1", "type", "bridge"),
      ip("create br0 again", "link", "add", "name", "br0", "type", "bridge"),
      ip("create br2", "link", "add", "name", "br2", "type", "bridge"),
    ]).catch((e: unknown) => e);
    expect(host.ran).toHaveLength(1);
    expect(err).toBeInstanceOf(StepError);
    const e = err as StepError;
    expect(e.done).toBe(1);
    const cause = e.cause as CommandError;
    expect(cause).toBeInstanceOf(CommandError);
    expect(cause.argv).toEqual(["ip", "link", "add", "name", "br0", "type", "bridge"]);
    expect(cause.stderr).toBe("RTNETLINK answers: File exists\n");
    expect(cause.message).toBe(
      `root@${NS}:22: ip link add name br0 type bridge exited 1: RTNETLINK answers: File exists`,
    );
    expect(link("br1")).toBeDefined();
    expect(link("br2")).toBeUndefined();
  });

  it("name a missing device's line too", async () => {
    const err = await applySteps(new NamespaceHost(), [
      ip("up br1", "link", "set", "dev", "br1", "up"),
      ip("attach", "link", "set", "dev", "nosuch0", "master", "br1"),
    ]).catch((e: unknown) => e);
    expect((err as StepError).done).toBe(1);
    expect((err as StepError).message).toBe(
      `root@${NS}:22: ip link set dev nosuch0 master br1 exited 1: Cannot find device "nosuch0"`,
    );
    expect(link("br1")?.flags.includes("UP")).toBe(true);
  });
});
