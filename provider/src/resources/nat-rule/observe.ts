import type { Host, RunResult } from "../../host/host";
import { parseProbe } from "../../host/probe";
import { declareRunsInShell, scriptIn, type ScriptCall } from "../../host/script";
import { observeWith, type ObserveContext, type ProbeCall } from "../../resource";
import { persistProbeArgs } from "../../persist/oneshot";
import { unitName } from "../../persist/systemd-unit";
import { parsePersistProbe, probeUnits, warnNoSystemd } from "../../persist/persistence";
import { parseSysctlProbe } from "../../sysctl";
import { parseIptablesSave } from "./iptables";
import { parseNftTable } from "./nftables";
import { nftTableName, sysctlOwner } from "./rules";
import type { NatRuleInputs, NatRuleState, ObservedChain, ObservedRule, Rule } from "./schema";

// Reviewed against declareRunsInShell's contract.
declareRunsInShell("nat-probe.sh");

/** Printed before what a listing tool said when it failed (nat-probe.sh). */
export const FAILED = "pulumi-hypervisor-failed:";
export const IP_FORWARD = "net/ipv4/ip_forward";
/** The unit and boot script folder name of NAT rules. */
export const NAT_KIND = "nat";

/**
 * Returns the call of the single observe probe (nat-probe.sh). `expect` is where its table likely
 * is: a create's first look finds none, any other look the one the rule has. It orders the probe's
 * two nft listings so that the likely case costs one; the answer is the same either way.
 */
export function observeCall(name: string, expect: "present" | "absent" = "present"): ScriptCall {
  return scriptIn(__dirname, "nat-probe.sh", [
    nftTableName(name),
    sysctlOwner(name),
    expect,
    ...persistProbeArgs(NAT_KIND, name),
  ]);
}

function failure(section: string): string | undefined {
  const i = section.indexOf(FAILED);
  return i >= 0 ? section.slice(i + FAILED.length).trim() || "failed without output" : undefined;
}

/** Returns the NatRule state parsed from the probe's output. */
export function parseNatRuleState(name: string, stdout: string): NatRuleState {
  const out = parseProbe(stdout, "the nat rule probe");
  const toolLines = (out.get("tools") ?? "").split("\n");
  const nftAvailable = toolLines.includes("nft yes");
  const iptablesAvailable = toolLines.includes("iptables yes");
  if (
    !toolLines.some((l) => l.startsWith("nft ")) ||
    !toolLines.some((l) => l.startsWith("iptables "))
  ) {
    throw new Error(
      `unexpected output of the nat rule probe: ${JSON.stringify(stdout.slice(0, 200))}`,
    );
  }
  const nftText = out.need("nft");
  const iptText = out.need("iptables");
  const nftError = failure(nftText);
  const iptablesError = failure(iptText);
  return {
    name,
    nftAvailable,
    iptablesAvailable,
    nftError,
    iptablesError,
    nft: nftError === undefined ? parseNftTable(nftText, nftTableName(name)) : undefined,
    iptables: iptablesError === undefined ? parseIptablesSave(iptText, name) : undefined,
    ipForward: parseSysctlProbe(out.need("sysctl"))[IP_FORWARD],
    sshdPorts: out
      .need("sshd-ports")
      .split("\n")
      .filter((l) => /^\d{1,5}$/.test(l.trim()))
      .map((l) => Number(l.trim()))
      // each port once, in order (a port sshd listens on with both families comes twice)
      .filter((p, i, all) => all.indexOf(p) === i)
      .sort((a, b) => a - b),
    persisted: parsePersistProbe(out),
  };
}

/** Returns the rule's probe: its nft table, iptables chains and ip_forward claim in one command. */
export function probeNatRule(inputs: NatRuleInputs, ctx?: ObserveContext): ProbeCall {
  return {
    // the table a create or a delete expects gone is first looked for in the list of tables
    call: observeCall(inputs.name, ctx?.creating || ctx?.after === "delete" ? "absent" : "present"),
    units: probeUnits(unitName(NAT_KIND, inputs.name), "active"),
  };
}

/** Returns the NatRule state from its probe's result. */
export function parseNatRuleResult(
  r: RunResult,
  inputs: NatRuleInputs,
  ctx: ObserveContext,
): NatRuleState {
  const state = parseNatRuleState(inputs.name, r.stdout);
  if (inputs.persistence === "auto") warnNoSystemd(ctx.host, state.persisted);
  const port = ctx.sshServerPort;
  return { ...state, ...(port !== undefined ? { sessionPort: port } : {}), inputs };
}

/** Observes the rule's nft table, iptables chains and ip_forward claim in one remote command. */
export function observeNatRule(
  host: Host,
  inputs: NatRuleInputs,
  ctx: ObserveContext,
): Promise<NatRuleState> {
  return observeWith({ probe: probeNatRule, parse: parseNatRuleResult }, host, inputs, ctx);
}

/** Returns the decoded rules of an observed chain (foreign ones left out). */
export function decodedRules(chain: ObservedChain | undefined): Rule[] {
  return (chain?.rules ?? []).flatMap((r: ObservedRule) => ("rule" in r ? [r.rule] : []));
}
