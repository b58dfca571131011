import { z } from "zod";
import { InterfaceName, Ipv4Address, Ipv4Cidr } from "../../net";
import { PersistedDrift } from "../../persist/oneshot";
import { PersistedBy, Persistence, type PersistedState } from "../../persist/persistence";
import type { SysctlObservation } from "../../sysctl";

// The name becomes the nft table `pulumi_hv_<name>` and the iptables chains `PHV-<name>-POST`;
// iptables allows 28 characters per chain name, and "PHV-" + 19 + "-POST" is 28.
export const NatRuleName = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_-]{0,18}$/,
    "must be 1 to 19 characters of letters, digits, '_' or '-', starting with a letter " +
      "(it names the nft table pulumi_hv_<name> and the iptables chains PHV-<name>-POST/-PRE/-FWD)",
  );

const Port = z
  .number({ error: "must be a port number" })
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(65535, "must be at most 65535");

export const PortForward = z
  .object({
    protocol: z.enum(["tcp", "udp"], { error: 'must be "tcp" or "udp"' }).describe("tcp or udp."),
    hostPort: Port.describe("The port on the host's own addresses (1-65535)."),
    destination: Ipv4Address.describe("The guest's IPv4 address."),
    destinationPort: Port.describe("The port on the guest (1-65535)."),
    inInterface: InterfaceName.optional().describe(
      "Only connections arriving on this interface; unset: any interface.",
    ),
  })
  .strict()
  .meta({ id: "PortForward", description: "DNAT from a port on the host to a guest." });
export type PortForward = z.infer<typeof PortForward>;

export const NatBackend = z.enum(["nftables", "iptables", "auto"], {
  error: 'must be "nftables", "iptables" or "auto"',
});
export type NatBackend = z.infer<typeof NatBackend>;

export const NatRuleInputs = z
  .object({
    name: NatRuleName.describe(
      "1-19 of letters, digits, '_', '-', starting with a letter; names the nft table `pulumi_hv_<name>` and the iptables chains `PHV-<name>-POST/-PRE/-FWD`.",
    ),
    sourceCidr: Ipv4Cidr.describe(
      'The IPv4 network whose traffic is translated ("198.18.140.0/24"; host bits are cleared).',
    ),
    outInterface: InterfaceName.describe(
      "The interface the translated traffic leaves by (the uplink).",
    ),
    masquerade: z
      .boolean()
      .default(false)
      .describe("Rewrite the source to the outgoing interface's address; excludes `snatTo`."),
    // null, not absent, when unset: the observed state reports a missing SNAT as null.
    snatTo: Ipv4Address.nullable()
      .default(null)
      .describe("Rewrite the source to this fixed IPv4 address instead; excludes `masquerade`."),
    forward: z
      .boolean()
      .default(false)
      .describe(
        "Accept forwarding from `sourceCidr` out of `outInterface`, and established/related traffic back.",
      ),
    portForwards: z
      .array(PortForward)
      .default([])
      .describe(
        "DNAT from ports on the host's own addresses to guests, each with the forward accepts it needs.",
      ),
    backend: NatBackend.default("auto").describe(
      "nftables, iptables, or auto: the backend already in use, else nftables when installed.",
    ),
    persistence: Persistence,
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.masquerade && r.snatTo !== null) {
      ctx.addIssue({
        code: "custom",
        path: ["masquerade"],
        message:
          "masquerade and snatTo are mutually exclusive: masquerade uses the outgoing interface's address, snatTo a fixed one; set only one",
      });
    }
    const seen = new Map<string, number>();
    r.portForwards.forEach((p, i) => {
      const key = `${p.protocol}/${p.hostPort}/${p.inInterface ?? ""}`;
      const first = seen.get(key);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["portForwards", i, "hostPort"],
          message: `${p.protocol} port ${p.hostPort}${p.inInterface ? ` on ${p.inInterface}` : ""} is already forwarded by portForwards[${first}]`,
        });
      } else {
        seen.set(key, i);
      }
    });
  });
export type NatRuleInputs = z.infer<typeof NatRuleInputs>;

/** What a NatRule reports beyond its inputs. */
export const NatRuleOutputs = z.object({
  table: z
    .string()
    .describe(
      "The provider-owned nft table (`pulumi_hv_<name>`, family ip) or iptables chain prefix (`PHV-<name>`) holding the rules.",
    ),
  activeBackend: z
    .enum(["nftables", "iptables"])
    .describe("The backend actually holding the rules."),
  unmanagedRules: z
    .array(z.string())
    .describe(
      "Rules or chain changes inside the provider's own table that no input describes (made by hand).",
    ),
  persistedBy: PersistedBy,
  persistedDrift: PersistedDrift,
});

/** The chains of a NatRule, named as in its nft table. */
export type ChainName = "postrouting" | "prerouting" | "forward";
export const CHAIN_NAMES: readonly ChainName[] = ["postrouting", "prerouting", "forward"];

/**
 * One rule in the provider's vocabulary. Both backends are decoded into it (nft JSON, iptables-save
 * lines), so comparing desired and observed rules does not depend on either tool's text format.
 */
export interface Rule {
  iif?: string;
  oif?: string;
  /** IPv4 CIDR, always with a prefix length ("198.18.140.10/32"). */
  saddr?: string;
  daddr?: string;
  /** Destination is one of the host's own addresses (`fib daddr type local` / `addrtype LOCAL`). */
  local?: boolean;
  proto?: "tcp" | "udp";
  sport?: number;
  dport?: number;
  /** conntrack state established,related. */
  established?: boolean;
  /** conntrack status dnat (the connection was destination-NATed). */
  dnatted?: boolean;
  action: "masquerade" | "snat" | "dnat" | "accept";
  /** The snat/dnat address. */
  to?: string;
  /** The dnat port. */
  toPort?: number;
}

/** A rule found on the host: decoded, or the raw text of one the vocabulary does not cover. */
export type ObservedRule = { rule: Rule } | { foreign: string };

export interface ObservedChain {
  rules: ObservedRule[];
  /** Why the chain is not as the provider defines it (wrong hook, policy, missing jump), if it is not. */
  problems: string[];
}

/** What one backend holds of this rule on the host. */
export interface ObservedRuleset {
  chains: Partial<Record<ChainName, ObservedChain>>;
  /** Objects inside the provider's own namespace that it does not define (extra chains, foreign jumps). */
  extras: string[];
  /** iptables only: the rule lines (`-A POSTROUTING ...`) that jump from a built-in chain to ours. */
  jumps: Array<{ table: "nat" | "filter"; line: string; own: boolean; chain: ChainName }>;
}

export interface NatRuleState {
  name: string;
  /** Which tools the host has. */
  nftAvailable: boolean;
  iptablesAvailable: boolean;
  /** A tool that is present but whose listing failed, with what it said. */
  nftError: string | undefined;
  iptablesError: string | undefined;
  /** The provider's nft table (undefined when absent). */
  nft: ObservedRuleset | undefined;
  /** The provider's iptables chains and jumps (undefined when none exist). */
  iptables: ObservedRuleset | undefined;
  /** net.ipv4.ip_forward and whether this rule holds a claim on it. */
  ipForward: SysctlObservation | undefined;
  /** The TCP ports sshd listens on (a port forward of one without inInterface locks logins out). */
  sshdPorts: number[];
  /**
   * The TCP port the provider's SSH session came in on, where the host told it: guarded like
   * sshd's, and the one guard left where sshd's ports cannot be seen (a socket that systemd holds
   * for an sshd per connection, a server not named sshd).
   */
  sessionPort?: number;
  /** The rule's unit and boot script as the probe saw them. */
  persisted: PersistedState;
  /** The inputs the state was observed for (outputs describe the persisted layer's drift). */
  inputs?: NatRuleInputs;
}
