// What both backends share: the names of the provider's objects, how each chain hooks in, and the
// rules a NatRule's inputs call for (a backend renders and decodes them: nftables.ts, iptables.ts).
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
