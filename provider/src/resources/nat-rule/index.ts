import { formWhenPersisted, oneshotPersistence } from "../../persist/oneshot";
import type { ResourceModule } from "../../resource";
import { decodedRules, observeNatRule, parseNatRuleResult, probeNatRule } from "./observe";
import { activeBackend, natPersistedForm, planNatRule, planNatRuleLive } from "./plan";
import { renderNftRule } from "./nftables";
import { forwardRules, iptablesChainPrefix, nftTableName, portForwardRules } from "./rules";
import {
  CHAIN_NAMES,
  NatRuleInputs,
  NatRuleOutputs,
  type NatRuleState,
  type ObservedRuleset,
  type PortForward,
} from "./schema";

function activeRuleset(
  state: NatRuleState,
  prefer?: NatRuleInputs["backend"],
): ObservedRuleset | undefined {
  const b = activeBackend(state, prefer);
  return b === "nftables" ? state.nft : b === "iptables" ? state.iptables : undefined;
}

const persistence = oneshotPersistence<NatRuleInputs, NatRuleState>(
  formWhenPersisted(natPersistedForm),
  planNatRuleLive,
);

/** Returns what is in the provider's own table/chains that no input describes (drift made by hand). */
export function unmanagedRules(rs: ObservedRuleset | undefined): string[] {
  if (!rs) return [];
  const out: string[] = [];
  for (const c of CHAIN_NAMES) {
    const chain = rs.chains[c];
    if (!chain) continue;
    out.push(...chain.problems);
    for (const r of chain.rules) if ("foreign" in r) out.push(r.foreign);
  }
  return [...out, ...rs.extras];
}

/** The NatRule resource. */
export const natRuleModule: ResourceModule<NatRuleInputs, NatRuleState, typeof NatRuleOutputs> = {
  type: "NatRule",
  description:
    "Source NAT, forward accepts and port forwards for a guest network, in an nftables table (or iptables chains) of its own.",
  noun: "nat rule",
  inputs: NatRuleInputs,
  inputKeys: Object.keys(NatRuleInputs.shape),
  identity: ["name"],
  id: (inputs) => inputs.name,
  needsSessionPort: true,
  probe: probeNatRule,
  parse: parseNatRuleResult,
  observe: (host, inputs, ctx) => observeNatRule(host, inputs, ctx),
  exists: (state) => state.nft !== undefined || state.iptables !== undefined,
  outputSchema: NatRuleOutputs,
  plan: planNatRule,
  outputs: (state) => {
    const backend = activeBackend(state);
    return {
      table:
        backend === "nftables"
          ? nftTableName(state.name)
          : backend === "iptables"
            ? iptablesChainPrefix(state.name)
            : undefined,
      activeBackend: backend,
      unmanagedRules: unmanagedRules(activeRuleset(state)),
      ...persistence.outputs(state),
    };
  },
  // Derived from the decoded rules, so a flushed table or a rule changed by hand shows as the
  // inputs it no longer implements (masquerade false, a port forward missing, ...). The lifecycle
  // parses these again on read and delete, so they must stay valid inputs: at most one of
  // masquerade/snatTo, and snatTo null (not left out) when no SNAT is in place.
  observedInputs: (state, desired) => {
    const rs = activeRuleset(state, desired.backend);
    const has = (keys: string[], rule: string): boolean => keys.includes(rule);
    const post = decodedRules(rs?.chains.postrouting);
    const nat = post.find((r) => r.action === "masquerade" || r.action === "snat");
    const sourceCidr = nat?.saddr ?? desired.sourceCidr;
    const outInterface = nat?.oif ?? desired.outInterface;
    const fwd = decodedRules(rs?.chains.forward).map(renderNftRule);
    const pre = decodedRules(rs?.chains.prerouting).map(renderNftRule);
    const portForwards: PortForward[] = [];
    for (const r of decodedRules(rs?.chains.prerouting)) {
      if (
        r.action !== "dnat" ||
        r.proto === undefined ||
        r.dport === undefined ||
        r.to === undefined ||
        r.toPort === undefined
      )
        continue;
      const p: PortForward = {
        protocol: r.proto,
        hostPort: r.dport,
        destination: r.to,
        destinationPort: r.toPort,
        ...(r.iif !== undefined ? { inInterface: r.iif } : {}),
      };
      const want = portForwardRules(p);
      // A port forward counts only when its DNAT is exactly ours and both accepts are there.
      if (
        has(pre, renderNftRule(want.dnat)) &&
        want.accepts.every((a) => has(fwd, renderNftRule(a)))
      )
        portForwards.push(p);
    }
    const backend = activeBackend(state, desired.backend);
    return {
      name: state.name,
      sourceCidr,
      outInterface,
      masquerade: nat?.action === "masquerade",
      snatTo: nat?.action === "snat" ? (nat.to ?? null) : null,
      forward: forwardRules(sourceCidr, outInterface).every((r) => has(fwd, renderNftRule(r))),
      portForwards,
      backend: desired.backend === "auto" ? "auto" : (backend ?? desired.backend),
      persistence: persistence.observed(desired, state),
    };
  },
};
