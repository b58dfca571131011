import { PlanError } from "../../errors";
import { renderOneshotForm, withPersistence } from "../../persist/oneshot";
import { persists, type PersistedForm } from "../../persist/persistence";
import type { Step } from "../../step";
import { claimSysctl, releaseSysctl } from "../../sysctl";
import { IP_FORWARD, NAT_KIND } from "./observe";
import { renderIptablesDelete, renderIptablesRestore, type JumpEdits } from "./iptables";
import { renderNftRule, renderNftRuleset } from "./nftables";
import { iptablesChainPrefix, nftTableName, rulesFor, sysctlOwner, type RuleSet } from "./rules";
import {
  CHAIN_NAMES,
  type NatBackend,
  type NatRuleInputs,
  type NatRuleState,
  type ObservedRuleset,
} from "./schema";

export type ConcreteBackend = Exclude<NatBackend, "auto">;

/**
 * Returns the backend a rule uses: the one asked for; for auto the one already holding the rule
 * (so installing nft later does not move a working rule), else nftables when nft is present.
 */
export function resolveBackend(backend: NatBackend, actual: NatRuleState): ConcreteBackend {
  const usable = (b: ConcreteBackend): string | undefined => {
    const [available, error, tool] =
      b === "nftables"
        ? [actual.nftAvailable, actual.nftError, "nft"]
        : [actual.iptablesAvailable, actual.iptablesError, "iptables-save/iptables-restore"];
    if (!available) return `${tool} is not installed on the host`;
    if (error !== undefined) return `listing the ${b} ruleset failed: ${error}`;
    return undefined;
  };
  if (backend !== "auto") {
    const why = usable(backend);
    if (why !== undefined) {
      const other = backend === "nftables" ? "iptables" : "nftables";
      throw new PlanError(
        `backend ${backend}: ${why}; install it or set backend to ${other} or auto`,
      );
    }
    return backend;
  }
  if (actual.nft !== undefined && usable("nftables") === undefined) return "nftables";
  if (actual.iptables !== undefined && usable("iptables") === undefined) return "iptables";
  if (usable("nftables") === undefined) return "nftables";
  if (usable("iptables") === undefined) return "iptables";
  throw new PlanError(
    `backend auto: neither backend is usable (nftables: ${usable("nftables") ?? "ok"}; iptables: ${usable("iptables") ?? "ok"}); install nftables`,
  );
}

/** Returns how the observed ruleset differs from the wanted rules ("+ forward: ...", "- ..."), [] when equal. */
export function rulesetDifferences(observed: ObservedRuleset | undefined, want: RuleSet): string[] {
  const out: string[] = [];
  for (const chain of CHAIN_NAMES) {
    const o = observed?.chains[chain];
    if (!o) {
      out.push(`+ chain ${chain}`);
      for (const r of want[chain]) out.push(`+ ${chain}: ${renderNftRule(r)}`);
      continue;
    }
    out.push(...o.problems);
    const have = o.rules.map((r) =>
      "rule" in r
        ? `${chain}: ${renderNftRule(r.rule)}`
        : `${r.foreign} (not written by the provider)`,
    );
    const wanted = want[chain].map((r) => `${chain}: ${renderNftRule(r)}`);
    const missing = wanted.filter(
      (w, i) => wanted.indexOf(w) === i && count(wanted, w) > count(have, w),
    );
    const surplus = have.filter(
      (h, i) => have.indexOf(h) === i && count(have, h) > count(wanted, h),
    );
    out.push(...surplus.map((s) => `- ${s}`), ...missing.map((m) => `+ ${m}`));
    if (missing.length === 0 && surplus.length === 0 && have.join("\n") !== wanted.join("\n")) {
      out.push(`reorder the rules of chain ${chain}`);
    }
  }
  out.push(...(observed?.extras ?? []).map((e) => `- ${e} (not written by the provider)`));
  return out;
}

const count = (xs: readonly string[], x: string): number => xs.filter((y) => y === x).length;

function describe(differences: string[]): string {
  const shown = differences.slice(0, 6).join("; ");
  return differences.length > 6 ? `${shown}; and ${differences.length - 6} more` : shown;
}

function nftApplyStep(
  name: string,
  want: RuleSet,
  observed: ObservedRuleset | undefined,
  differences: string[],
): Step {
  const t = nftTableName(name);
  const n = CHAIN_NAMES.reduce((acc, c) => acc + want[c].length, 0);
  const summary =
    observed === undefined
      ? `create nft table ip ${t} with ${n} rule${n === 1 ? "" : "s"}`
      : `replace nft table ip ${t} in one transaction (${describe(differences)})`;
  return { summary, argv: ["nft", "-f", "-"], stdin: renderNftRuleset(name, want) };
}

function nftDeleteStep(name: string): Step {
  const t = nftTableName(name);
  return { summary: `delete nft table ip ${t}`, argv: ["nft", "delete", "table", "ip", t] };
}

function iptablesApplyStep(
  name: string,
  want: RuleSet,
  observed: ObservedRuleset | undefined,
  differences: string[],
): Step {
  const prefix = iptablesChainPrefix(name);
  const jumps: JumpEdits = { missing: [], surplus: [] };
  for (const c of CHAIN_NAMES) {
    const own = (observed?.jumps ?? []).filter((j) => j.own && j.chain === c);
    if (own.length === 0) jumps.missing.push(c);
    jumps.surplus.push(...own.slice(1).map((j) => ({ table: j.table, line: j.line })));
  }
  const summary =
    observed === undefined
      ? `create iptables chains ${prefix}-POST/-PRE/-FWD with their jumps`
      : `redefine iptables chains ${prefix}-* with iptables-restore --noflush (${describe(differences)})`;
  return {
    summary,
    argv: ["iptables-restore", "--noflush"],
    stdin: renderIptablesRestore(name, want, jumps),
  };
}

function iptablesDeleteStep(name: string, observed: ObservedRuleset): Step {
  const chains = CHAIN_NAMES.filter((c) => observed.chains[c] !== undefined);
  const own = observed.jumps.filter((j) => j.own).map((j) => ({ table: j.table, line: j.line }));
  return {
    summary: `delete iptables chains ${iptablesChainPrefix(name)}-* and the provider's jumps to them`,
    argv: ["iptables-restore", "--noflush"],
    stdin: renderIptablesDelete(name, chains, own),
  };
}

/**
 * Returns the rule's unit and boot script as the provider would write them: the create plan
 * against a host without the rule, in the backend the live rule uses.
 */
export function natPersistedForm(d: NatRuleInputs, actual: NatRuleState): PersistedForm {
  const empty: NatRuleState = {
    name: d.name,
    nftAvailable: actual.nftAvailable,
    iptablesAvailable: actual.iptablesAvailable,
    nftError: actual.nftError,
    iptablesError: actual.iptablesError,
    nft: undefined,
    iptables: undefined,
    ipForward: undefined,
    sshdPorts: [],
    persisted: actual.persisted,
  };
  // Debian's nftables.service and netfilter-persistent load the admin's rulesets before
  // network-pre.target; the provider's table comes after them, as it does live.
  return renderOneshotForm({
    kind: NAT_KIND,
    name: d.name,
    title: `nat rule ${d.name}`,
    steps: planNatRuleLive({ ...d, backend: resolveBackend(d.backend, actual) }, empty),
    after: ["network-pre.target", "systemd-sysctl.service"],
    before: ["network.target"],
  });
}

/** Returns the steps that take the host from `actual` to `desired` (undefined: delete). */
export function planNatRule(desired: NatRuleInputs | undefined, actual: NatRuleState): Step[] {
  const live = planNatRuleLive(desired, actual);
  if (desired === undefined) return withPersistence(true, live, undefined, actual.persisted);
  const want = persists(desired.persistence, actual.persisted)
    ? natPersistedForm(desired, actual)
    : undefined;
  return withPersistence(false, live, want, actual.persisted);
}

/** Returns the live steps only: the table or chains and ip_forward, not the persisted layer. */
export function planNatRuleLive(desired: NatRuleInputs | undefined, actual: NatRuleState): Step[] {
  const name = actual.name;
  const owner = sysctlOwner(name);
  const steps: Step[] = [];
  if (desired === undefined) {
    // ip_forward goes first, so guests are never forwarded un-NATed while the rules go away.
    if (actual.ipForward?.claimed) steps.push(releaseSysctl(IP_FORWARD, owner));
    if (actual.nft) steps.push(nftDeleteStep(name));
    if (actual.iptables) steps.push(iptablesDeleteStep(name, actual.iptables));
    return steps;
  }
  desired.portForwards.forEach((p, i) => {
    if (p.protocol !== "tcp" || p.inInterface !== undefined) return;
    const sshd = actual.sshdPorts.includes(p.hostPort);
    if (!sshd && actual.sessionPort !== p.hostPort) return;
    const what = sshd
      ? `sshd listens on tcp port ${p.hostPort}`
      : `this SSH session came in on tcp port ${p.hostPort}`;
    throw new PlanError(
      `portForwards[${i}]: ${what}, and a forward of it without inInterface sends every login to the host on to ${p.destination}, cutting the provider off; ` +
        `set inInterface to the interface the forward is for (not the one the host is managed through), or forward another port`,
    );
  });
  const backend = resolveBackend(desired.backend, actual);
  const want = rulesFor(desired);
  if (backend === "nftables") {
    const differences = rulesetDifferences(actual.nft, want);
    if (differences.length > 0) steps.push(nftApplyStep(name, want, actual.nft, differences));
    // The new backend's rules are in place before the old ones go (a connection keeps its NAT mapping).
    if (actual.iptables) steps.push(iptablesDeleteStep(name, actual.iptables));
  } else {
    const differences = rulesetDifferences(actual.iptables, want);
    if (differences.length > 0)
      steps.push(iptablesApplyStep(name, want, actual.iptables, differences));
    if (actual.nft) steps.push(nftDeleteStep(name));
  }
  // ip_forward comes last, once the NAT is in place.
  if (!actual.ipForward?.claimed || actual.ipForward.value !== "1")
    steps.push(claimSysctl(IP_FORWARD, owner));
  return steps;
}

/** Returns the backend whose objects the state holds (nftables first when both do), if any. */
export function activeBackend(
  state: NatRuleState,
  prefer?: NatBackend,
): ConcreteBackend | undefined {
  if (state.nft && state.iptables) return prefer === "iptables" ? "iptables" : "nftables";
  if (state.nft) return "nftables";
  if (state.iptables) return "iptables";
  return undefined;
}
