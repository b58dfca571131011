import type { ChainName, NatRuleInputs, PortForward, Rule } from "./schema";

/** Returns the name of the provider's nft table for a NatRule (family ip). */
export function nftTableName(name: string): string {
  return `pulumi_hv_${name}`;
}

/** Returns the prefix of the provider's iptables chains for a NatRule. */
export function iptablesChainPrefix(name: string): string {
  return `PHV-${name}`;
}

/** The sysctl owner of a NatRule's ip_forward claim. */
export function sysctlOwner(name: string): string {
  return `natrule-${name}`;
}

/** How each chain hooks in: nft base-chain definition and the iptables table/built-in chain/suffix. */
export const CHAIN_SPECS: Record<
  ChainName,
  {
    type: "nat" | "filter";
    hook: string;
    prio: number;
    priority: string;
    table: "nat" | "filter";
    builtin: string;
    suffix: string;
  }
> = {
  postrouting: {
    type: "nat",
    hook: "postrouting",
    prio: 100,
    priority: "srcnat",
    table: "nat",
    builtin: "POSTROUTING",
    suffix: "POST",
  },
  prerouting: {
    type: "nat",
    hook: "prerouting",
    prio: -100,
    priority: "dstnat",
    table: "nat",
    builtin: "PREROUTING",
    suffix: "PRE",
  },
  forward: {
    type: "filter",
    hook: "forward",
    prio: 0,
    priority: "filter",
    table: "filter",
    builtin: "FORWARD",
    suffix: "FWD",
  },
};

/** Returns the iptables chain of a NatRule for one of its chains ("PHV-guestnat-POST"). */
export function iptablesChain(name: string, chain: ChainName): string {
  return `${iptablesChainPrefix(name)}-${CHAIN_SPECS[chain].suffix}`;
}

/** Returns the comment that marks the provider's jumps from built-in iptables chains. */
export function jumpComment(name: string): string {
  return `pulumi-hypervisor natrule ${name}`;
}

export type RuleSet = Record<ChainName, Rule[]>;

const host = (address: string): string => `${address}/32`;

/** Returns the accepts that let traffic out of the source network and its replies back in. */
export function forwardRules(sourceCidr: string, outInterface: string): Rule[] {
  return [
    { saddr: sourceCidr, oif: outInterface, action: "accept" },
    { iif: outInterface, daddr: sourceCidr, established: true, action: "accept" },
  ];
}

/** Returns the DNAT of a port forward and the two forward accepts it needs (there and back). */
export function portForwardRules(p: PortForward): { dnat: Rule; accepts: Rule[] } {
  const iif = p.inInterface !== undefined ? { iif: p.inInterface } : {};
  const oif = p.inInterface !== undefined ? { oif: p.inInterface } : {};
  return {
    dnat: {
      ...iif,
      local: true,
      proto: p.protocol,
      dport: p.hostPort,
      action: "dnat",
      to: p.destination,
      toPort: p.destinationPort,
    },
    // `ct status dnat` limits both to connections a DNAT made; replies carry the same status.
    accepts: [
      {
        ...iif,
        daddr: host(p.destination),
        proto: p.protocol,
        dport: p.destinationPort,
        dnatted: true,
        action: "accept",
      },
      {
        ...oif,
        saddr: host(p.destination),
        proto: p.protocol,
        sport: p.destinationPort,
        dnatted: true,
        action: "accept",
      },
    ],
  };
}

/** Returns the rules the inputs call for, per chain, in the order they are installed. */
export function rulesFor(d: NatRuleInputs): RuleSet {
  const postrouting: Rule[] = [];
  if (d.masquerade)
    postrouting.push({ saddr: d.sourceCidr, oif: d.outInterface, action: "masquerade" });
  if (d.snatTo !== null) {
    postrouting.push({ saddr: d.sourceCidr, oif: d.outInterface, action: "snat", to: d.snatTo });
  }
  const forwards = d.portForwards.map(portForwardRules);
  return {
    postrouting,
    prerouting: forwards.map((f) => f.dnat),
    forward: [
      ...(d.forward ? forwardRules(d.sourceCidr, d.outInterface) : []),
      ...forwards.flatMap((f) => f.accepts),
    ],
  };
}

const nftAddress = (cidr: string): string => (cidr.endsWith("/32") ? cidr.slice(0, -3) : cidr);

/** Returns the rule in nft syntax; also the rule's identity when comparing rule lists. */
export function renderNftRule(r: Rule): string {
  const parts: string[] = [];
  if (r.iif !== undefined) parts.push(`iifname "${r.iif}"`);
  if (r.oif !== undefined) parts.push(`oifname "${r.oif}"`);
  if (r.saddr !== undefined) parts.push(`ip saddr ${nftAddress(r.saddr)}`);
  if (r.daddr !== undefined) parts.push(`ip daddr ${nftAddress(r.daddr)}`);
  if (r.local) parts.push("fib daddr type local");
  if (r.sport !== undefined) parts.push(`${r.proto ?? "?"} sport ${r.sport}`);
  if (r.dport !== undefined) parts.push(`${r.proto ?? "?"} dport ${r.dport}`);
  if (r.sport === undefined && r.dport === undefined && r.proto !== undefined) {
    parts.push(`meta l4proto ${r.proto}`);
  }
  if (r.established) parts.push("ct state established,related");
  if (r.dnatted) parts.push("ct status dnat");
  switch (r.action) {
    case "masquerade":
      parts.push("masquerade");
      break;
    case "snat":
      parts.push(`snat to ${r.to ?? "?"}`);
      break;
    case "dnat":
      parts.push(`dnat to ${r.to ?? "?"}${r.toPort !== undefined ? `:${r.toPort}` : ""}`);
      break;
    case "accept":
      parts.push("accept");
      break;
  }
  return parts.join(" ");
}

/**
 * Returns the nft script that replaces the provider's table in one transaction: `nft -f` applies a
 * file atomically, and declaring the table before deleting it makes the delete succeed when the
 * table is new, so the host never runs without NAT mid-update (nor with half of it).
 */
export function renderNftRuleset(name: string, rules: RuleSet): string {
  const t = nftTableName(name);
  const lines = [`table ip ${t}`, `delete table ip ${t}`, `table ip ${t} {`];
  for (const chain of ["postrouting", "prerouting", "forward"] as const) {
    const s = CHAIN_SPECS[chain];
    lines.push(`\tchain ${chain} {`);
    lines.push(`\t\ttype ${s.type} hook ${s.hook} priority ${s.priority}; policy accept;`);
    for (const r of rules[chain]) lines.push(`\t\t${renderNftRule(r)}`);
    lines.push("\t}");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/** Returns the rule as iptables arguments, in the order iptables-save prints them. */
export function renderIptablesRule(r: Rule): string {
  const parts: string[] = [];
  if (r.saddr !== undefined) parts.push(`-s ${r.saddr}`);
  if (r.daddr !== undefined) parts.push(`-d ${r.daddr}`);
  if (r.iif !== undefined) parts.push(`-i ${r.iif}`);
  if (r.oif !== undefined) parts.push(`-o ${r.oif}`);
  if (r.proto !== undefined) parts.push(`-p ${r.proto}`);
  if (r.local) parts.push("-m addrtype --dst-type LOCAL");
  if (r.proto !== undefined && (r.sport !== undefined || r.dport !== undefined)) {
    parts.push(`-m ${r.proto}`);
    if (r.sport !== undefined) parts.push(`--sport ${r.sport}`);
    if (r.dport !== undefined) parts.push(`--dport ${r.dport}`);
  }
  const states = [
    ...(r.established ? ["RELATED", "ESTABLISHED"] : []),
    ...(r.dnatted ? ["DNAT"] : []),
  ];
  if (states.length > 0) parts.push(`-m conntrack --ctstate ${states.join(",")}`);
  switch (r.action) {
    case "masquerade":
      parts.push("-j MASQUERADE");
      break;
    case "snat":
      parts.push(`-j SNAT --to-source ${r.to ?? "?"}`);
      break;
    case "dnat":
      parts.push(
        `-j DNAT --to-destination ${r.to ?? "?"}${r.toPort !== undefined ? `:${r.toPort}` : ""}`,
      );
      break;
    case "accept":
      parts.push("-j ACCEPT");
      break;
  }
  return parts.join(" ");
}

/** Returns the arguments of the provider's jump from a built-in chain to one of its chains. */
export function renderJump(name: string, chain: ChainName): string {
  return `-m comment --comment "${jumpComment(name)}" -j ${iptablesChain(name, chain)}`;
}

/** What the iptables converge needs to know about jumps already on the host, per chain. */
export interface JumpEdits {
  /** Chains that have no jump of the provider yet. */
  missing: ChainName[];
  /** Saved lines (`-A FORWARD ...`) of surplus jumps to remove. */
  surplus: Array<{ table: "nat" | "filter"; line: string }>;
}

/**
 * Returns the iptables-restore --noflush input that (re)defines the provider's chains: declaring a
 * user chain under --noflush creates it or empties it, so the rules are replaced per table in one
 * commit, while the built-in chains and every other rule stay as they are.
 */
export function renderIptablesRestore(name: string, rules: RuleSet, jumps: JumpEdits): string {
  const out: string[] = [];
  for (const table of ["nat", "filter"] as const) {
    const chains = (["postrouting", "prerouting", "forward"] as const).filter(
      (c) => CHAIN_SPECS[c].table === table,
    );
    out.push(`*${table}`);
    for (const c of chains) out.push(`:${iptablesChain(name, c)} - [0:0]`);
    for (const c of chains)
      for (const r of rules[c]) out.push(`-A ${iptablesChain(name, c)} ${renderIptablesRule(r)}`);
    for (const c of chains) {
      // -I ... 1: ahead of rules that drop (docker's, the admin's), as the accepts must come first.
      if (jumps.missing.includes(c))
        out.push(`-I ${CHAIN_SPECS[c].builtin} 1 ${renderJump(name, c)}`);
    }
    for (const s of jumps.surplus) if (s.table === table) out.push(s.line.replace(/^-A /, "-D "));
    out.push("COMMIT");
  }
  return out.join("\n") + "\n";
}

/** Returns the iptables-restore --noflush input that removes the provider's jumps and chains. */
export function renderIptablesDelete(
  name: string,
  chains: readonly ChainName[],
  ownJumps: ReadonlyArray<{ table: "nat" | "filter"; line: string }>,
): string {
  const out: string[] = [];
  for (const table of ["nat", "filter"] as const) {
    const lines: string[] = [];
    for (const j of ownJumps) if (j.table === table) lines.push(j.line.replace(/^-A /, "-D "));
    for (const c of chains) {
      if (CHAIN_SPECS[c].table !== table) continue;
      lines.push(`-F ${iptablesChain(name, c)}`, `-X ${iptablesChain(name, c)}`);
    }
    if (lines.length > 0) out.push(`*${table}`, ...lines, "COMMIT");
  }
  return out.join("\n") + "\n";
}
