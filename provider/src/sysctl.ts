import type { Step } from "./step";

/** Where claims live: tmpfs, so they vanish on reboot exactly when sysctl values reset. */
export const CLAIMS_DIR = "/run/pulumi-hypervisor/sysctl";

// One claim file per resource that needs a value; the value found before the first claim is kept
// in `.original` and written back when the last claim goes, so a host setting made by someone
// else (libvirt, the admin) survives. flock serialises concurrent resources on one host.
const SYSCTL_SCRIPT = [
  "set -e",
  "action=$1 key=$2 owner=$3 value=$4 proc=${5:-/proc/sys} claims=${6:-" + CLAIMS_DIR + "}",
  'd="$claims/$key" p="$proc/$key"',
  'mkdir -p "$d"',
  'exec 9>"$claims/.lock"',
  "flock 9",
  'if [ "$action" = claim ]; then',
  '  [ -e "$d/.original" ] || cat "$p" > "$d/.original"',
  '  : > "$d/$owner"',
  '  echo "$value" > "$p"',
  "else",
  '  rm -f -- "$d/$owner"',
  '  for c in "$d"/*; do [ -e "$c" ] && exit 0; done',
  // the interface may be gone (a tap deleted by hand): then there is nothing to restore
  '  if [ -e "$d/.original" ]; then [ ! -e "$p" ] || cat "$d/.original" > "$p"; rm -f -- "$d/.original"; fi',
  "fi",
].join("\n");

/** A sysctl path under /proc/sys, slash-separated ("net/ipv4/ip_forward", "net/ipv4/conf/tap0/proxy_arp"). */
export type SysctlKey = string;

/** Returns the argv that claims (sets) or releases a sysctl for an owner ("natrule-guestnat"). */
export function sysctlArgv(
  action: "claim" | "release",
  key: SysctlKey,
  owner: string,
  value = "1",
  roots: { proc?: string; claims?: string } = {},
): string[] {
  const extra = roots.proc !== undefined ? [roots.proc, roots.claims ?? CLAIMS_DIR] : [];
  return ["sh", "-c", SYSCTL_SCRIPT, "sh", action, key, owner, value, ...extra];
}

/** Returns the step that sets a sysctl on behalf of an owner, remembering the value it replaced. */
export function claimSysctl(key: SysctlKey, owner: string, value = "1"): Step {
  return {
    summary: `set ${key.replace(/\//g, ".")}=${value} (claimed by ${owner})`,
    argv: sysctlArgv("claim", key, owner, value),
  };
}

/** Returns the step that drops an owner's claim, restoring the original value when it was the last. */
export function releaseSysctl(key: SysctlKey, owner: string): Step {
  return {
    summary: `release ${key.replace(/\//g, ".")} (claimed by ${owner}); restore it if nothing else needs it`,
    argv: sysctlArgv("release", key, owner),
  };
}

/** A probe script fragment: prints `<key> <value> <claimed:0|1>` for each key given as "$@". */
export const SYSCTL_PROBE = [
  "owner=$1; shift",
  'for k in "$@"; do',
  `  v=$(cat "/proc/sys/$k" 2>/dev/null || echo -)`,
  `  if [ -e "${CLAIMS_DIR}/$k/$owner" ]; then c=1; else c=0; fi`,
  '  echo "$k $v $c"',
  "done",
].join("\n");

/** Returns the argv that reports the value of each key and whether the owner holds a claim on it. */
export function sysctlProbeArgv(owner: string, keys: readonly SysctlKey[]): string[] {
  return ["sh", "-c", SYSCTL_PROBE, "sh", owner, ...keys];
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
