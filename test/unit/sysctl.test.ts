import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { argvWithCachedScripts, scriptArgv, scriptIn } from "../../provider/src/host/script";
import "../../provider/src/apply";
import { parseSysctlProbe, sysctlCall } from "../../provider/src/sysctl";
import { scratchDirs } from "../support/scratch";

const SRC = join(__dirname, "../../provider/src");

const scratchDir = scratchDirs("sysctl-");

// The claim script runs for real under /bin/sh against a scratch /proc/sys look-alike.
function scratch(initial: string) {
  const dir = scratchDir();
  const proc = join(dir, "proc");
  mkdirSync(join(proc, "net/ipv4"), { recursive: true });
  writeFileSync(join(proc, "net/ipv4/ip_forward"), initial);
  const roots = { proc, claims: join(dir, "claims") };
  const run = (action: "claim" | "release", owner: string) => {
    const [cmd, ...args] = scriptArgv(sysctlCall(action, "net/ipv4/ip_forward", owner, "1", roots));
    execFileSync(cmd!, args);
  };
  const value = () => readFileSync(join(proc, "net/ipv4/ip_forward"), "utf8").trim();
  return { run, value, roots, claims: roots.claims };
}

describe("sysctl claims", () => {
  it("restores the original value only when the last claim goes", () => {
    const s = scratch("0\n");
    s.run("claim", "natrule-a");
    s.run("claim", "tapdevice-b");
    expect(s.value()).toBe("1");
    s.run("release", "natrule-a");
    expect(s.value()).toBe("1");
    s.run("release", "tapdevice-b");
    expect(s.value()).toBe("0");
  });
  it("keeps a value someone else had set", () => {
    const s = scratch("1\n");
    s.run("claim", "natrule-a");
    s.run("release", "natrule-a");
    expect(s.value()).toBe("1");
  });
  it("is idempotent: releasing twice or without a claim changes nothing", () => {
    const s = scratch("0\n");
    s.run("release", "natrule-a");
    s.run("claim", "natrule-a");
    s.run("claim", "natrule-a");
    s.run("release", "natrule-a");
    s.run("release", "natrule-a");
    expect(s.value()).toBe("0");
  });
  it("gives up on a lock held too long, saying what holds it, and changes nothing", async () => {
    const s = scratch("0\n");
    s.run("claim", "natrule-a");
    const claims = s.claims;
    // in a process group of its own, so that its sleep goes with it
    const holder = spawn("flock", [join(claims, ".lock"), "sleep", "30"], {
      stdio: "ignore",
      detached: true,
    });
    try {
      // flock creates the lock file when it holds it; wait for that before racing it
      for (
        let i = 0;
        i < 100 && spawnSync("flock", ["-n", join(claims, ".lock"), "true"]).status === 0;
        i++
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const call = sysctlCall("release", "net/ipv4/ip_forward", "natrule-a", "1", {
        ...s.roots,
        waitSeconds: 1,
      });
      const [cmd, ...args] = scriptArgv(call);
      const started = Date.now();
      const r = spawnSync(cmd!, args, { encoding: "utf8" });
      expect(r.status).toBe(1);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(r.stderr).toBe(
        `sysctl-claim.sh: ${claims}/.lock is still held after 1 s by another process (see: fuser -v ${claims}/.lock); release of net/ipv4/ip_forward for natrule-a not done\n`,
      );
      expect(s.value()).toBe("1");
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
    }
  });
  it("runs as a step of a batch in a remote shell: sourced in a subshell, no shell of its own", async () => {
    const s = scratch("0\n");
    // the kept scripts of a remote shell, and a PATH whose sh notes each start
    const kept = mkdtempSync(join(tmpdir(), "sysctl-kept-"));
    const log = join(kept, "sh-started");
    mkdirSync(join(kept, "bin"));
    writeFileSync(join(kept, "bin", "sh"), `#!/bin/sh\necho "$@" >>"${log}"\nexec /bin/sh "$@"\n`, {
      mode: 0o755,
    });
    const batch = (action: "claim" | "release", owner: string, waitSeconds?: number) => {
      const claim = scriptArgv(
        sysctlCall(action, "net/ipv4/ip_forward", owner, "1", {
          ...s.roots,
          ...(waitSeconds !== undefined ? { waitSeconds } : {}),
        }),
      );
      const { argv, scripts } = argvWithCachedScripts(
        scriptArgv(scriptIn(SRC, "apply-batch.sh", ["0", "0", String(claim.length), ...claim])),
      );
      for (const k of scripts) writeFileSync(join(kept, k.hash), k.body);
      // the step's words name the kept script: `. HASH ARGS...`, no `sh -c`
      expect(argv).toContain(".");
      return spawnSync("/bin/sh", argv.slice(1), {
        encoding: "utf8",
        env: { PATH: `${join(kept, "bin")}:/usr/bin:/bin`, PULUMI_HYPERVISOR_SCRIPTS: kept },
      });
    };
    let holder: ReturnType<typeof spawn> | undefined;
    try {
      expect(batch("claim", "natrule-a").status).toBe(0);
      expect(s.value()).toBe("1");
      expect(batch("release", "natrule-a").status).toBe(0);
      expect(s.value()).toBe("0");
      expect(existsSync(log)).toBe(false);
      // a lock held too long fails the step (its exit ends only its subshell), said as before
      expect(batch("claim", "natrule-a").status).toBe(0);
      // in a process group of its own, so that its sleep goes with it
      holder = spawn("flock", [join(s.claims, ".lock"), "sleep", "30"], {
        stdio: "ignore",
        detached: true,
      });
      for (
        let i = 0;
        i < 100 && spawnSync("flock", ["-n", join(s.claims, ".lock"), "true"]).status === 0;
        i++
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = batch("release", "natrule-a", 1);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(
        `sysctl-claim.sh: ${s.claims}/.lock is still held after 1 s by another process`,
      );
      expect(r.stderr).toContain("@@pulumi-hypervisor-failed 0 1");
      expect(s.value()).toBe("1");
    } finally {
      if (holder?.pid !== undefined) process.kill(-holder.pid, "SIGKILL");
      rmSync(kept, { recursive: true, force: true });
    }
  });
  it("parses the probe", () => {
    expect(parseSysctlProbe("net/ipv4/ip_forward 1 1\nnet/ipv4/conf/tap0/proxy_arp - 0\n")).toEqual(
      {
        "net/ipv4/ip_forward": { value: "1", claimed: true },
        "net/ipv4/conf/tap0/proxy_arp": { value: "-", claimed: false },
      },
    );
  });
});
