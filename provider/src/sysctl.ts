import { declareRunsInShell, scriptIn, type ScriptCall } from "./host/script";
import type { Step } from "./step";

/**
 * Where claims live: tmpfs, so they vanish on reboot exactly when sysctl values reset. The
 * scripts sysctl-claim.sh and sysctl-probe.sh name the same directory.
 */
export const CLAIMS_DIR = "/run/pulumi-hypervisor/sysctl";

// Reviewed against declareRunsInShell's contract: a step of a batch sources it in a subshell,
// with no shell process of its own.
declareRunsInShell("sysctl-claim.sh");

/** A sysctl path under /proc/sys, slash-separated ("net/ipv4/ip_forward", "net/ipv4/conf/tap0/proxy_arp"). */
export type SysctlKey = string;

/** Returns the call that claims (sets) or releases a sysctl for an owner ("natrule-guestnat"). */
export function sysctlCall(
  action: "claim" | "release",
  key: SysctlKey,
  owner: string,
  value = "1",
  roots: { proc?: string; claims?: string; waitSeconds?: number } = {},
): ScriptCall {
  const wait = roots.waitSeconds !== undefined ? [String(roots.waitSeconds)] : [];
  const extra =
    roots.proc !== undefined || wait.length > 0
      ? [roots.proc ?? "/proc/sys", roots.claims ?? CLAIMS_DIR, ...wait]
      : [];
  return scriptIn(__dirname, "sysctl-claim.sh", [action, key, owner, value, ...extra]);
}

/** Returns the step that sets a sysctl on behalf of an owner, remembering the value it replaced. */
export function claimSysctl(key: SysctlKey, owner: string, value = "1"): Step {
  return {
    summary: `set ${key.replace(/\//g, ".")}=${value} (claimed by ${owner})`,
    script: sysctlCall("claim", key, owner, value),
  };
}

/** Returns the step that drops an owner's claim, restoring the original value when it was the last. */
export function releaseSysctl(key: SysctlKey, owner: string): Step {
  return {
    summary: `release ${key.replace(/\//g, ".")} (claimed by ${owner}); restore it if nothing else needs it`,
    script: sysctlCall("release", key, owner),
  };
}

export interface SysctlObservation {
  value: string;
  claimed: boolean;
}

/** Returns the probe's output by key. */
export function parseSysctlProbe(stdout: string): Record<SysctlKey, SysctlObservation> {
  const out: Record<SysctlKey, SysctlObservation> = {};
  for (const line of stdout.split("\n")) {
    const [k, v, c] = line.trim().split(" ");
    if (k && v !== undefined) out[k] = { value: v, claimed: c === "1" };
  }
  return out;
}
