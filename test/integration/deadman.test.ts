// The dead-man timer's scripts on a host without systemd (a namespace lab host): a detached sleep
// fires the restore when nobody confirms, a confirm stops it, and the files the change touched
// come back from the snapshot (a file that was absent is removed).
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import { applySteps } from "../../provider/src/apply";
import { armStep, confirmStep, type Guard } from "../../provider/src/deadman/deadman";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";
import { Connection } from "../../provider/src/host/connection";

// Namespace lab hosts share the machine's /run and /tmp: ids of this run only.
const dm1 = `dm${process.pid}a`;
const dm2 = `dm${process.pid}b`;
let lab: Lab;
let h: LabHost;

beforeAll(async () => {
  lab = await startLab({ name: "itdeadman", hosts: 1 });
  h = lab.hosts[0] as LabHost;
});

afterAll(async () => {
  await closeAllHosts();
  await h?.exec([
    "sh",
    "-c",
    `rm -rf /run/pulumi-hypervisor/deadman/${dm1} /run/pulumi-hypervisor/deadman/${dm2} /tmp/${dm1}.* /tmp/${dm2}.*`,
  ]);
  await lab?.stop();
});

async function cat(path: string): Promise<string | undefined> {
  const r = await h.exec(["cat", path]);
  return r.code === 0 ? r.stdout : undefined;
}

const guard = (id: string, seconds: number): Guard => ({
  id,
  seconds,
  reason: "test",
  restore: [{ summary: "mark", argv: ["sh", "-c", `echo restored > /tmp/${id}.mark`] }],
  files: [`/tmp/${id}.kept`, `/tmp/${id}.new`],
});

describe("the dead-man timer without systemd", () => {
  it("restores by itself when no login confirms, files from the snapshot first", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    await h.exec([
      "sh",
      "-c",
      `echo before > /tmp/${dm1}.kept; rm -f /tmp/${dm1}.new /tmp/${dm1}.mark`,
    ]);
    await applySteps(host, [armStep(guard(dm1, 2))]);
    expect(await cat(`/run/pulumi-hypervisor/deadman/${dm1}/timer`)).toBe("sleep\n");
    await h.exec(["sh", "-c", `echo after > /tmp/${dm1}.kept; echo new > /tmp/${dm1}.new`]);
    await sleep(3500);
    expect(await cat(`/tmp/${dm1}.mark`)).toBe("restored\n");
    expect(await cat(`/tmp/${dm1}.kept`)).toBe("before\n");
    expect(await cat(`/tmp/${dm1}.new`)).toBeUndefined();
    expect(await cat(`/run/pulumi-hypervisor/deadman/${dm1}/restore.log`)).toBe("");
    // a confirm that comes too late says the host rolled back (exit 3)
    const r = await host
      .run({ argv: ["true"] })
      .then(() => applySteps(host, [confirmStep(guard(dm1, 2))]).catch((e: unknown) => String(e)));
    expect(r).toMatch(new RegExp(`deadman-end\\.sh confirm ${dm1} exited 3`));
  }, 30_000);

  it("keeps the change when a confirm comes in time", async () => {
    const host = hostFor(Connection.parse(h.connection()));
    await h.exec(["sh", "-c", `rm -f /tmp/${dm2}.mark`]);
    await applySteps(host, [armStep(guard(dm2, 4)), confirmStep(guard(dm2, 4))]);
    await sleep(5000);
    expect(await cat(`/tmp/${dm2}.mark`)).toBeUndefined();
    expect(await cat(`/run/pulumi-hypervisor/deadman/${dm2}/confirmed`)).toMatch(/^\d+\n$/);
    // the detached sleep is gone with its process group
    const pid = (await cat(`/run/pulumi-hypervisor/deadman/${dm2}/pid`))?.trim() ?? "";
    expect(pid).toMatch(/^\d+$/);
    expect((await h.exec(["kill", "-0", "--", `-${pid}`])).code).not.toBe(0);
  }, 30_000);
});
