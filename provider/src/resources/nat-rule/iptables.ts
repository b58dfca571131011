import { CHAIN_SPECS, iptablesChain, jumpComment, type RuleSet } from "./rules";
import { ipv4NetworkCidr } from "../../net";
import { CHAIN_NAMES, type ChainName, type ObservedRuleset, type Rule } from "./schema";

// The iptables backend: a rule rendered as iptables arguments (`iptables-restore --noflush`), and
// decoded from what `iptables-save` prints.

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
  // One match each: a single --ctstate lists alternatives, and nft's two matches must both hold.
  if (r.established) parts.push("-m conntrack --ctstate RELATED,ESTABLISHED");
  if (r.dnatted) parts.push("-m conntrack --ctstate DNAT");
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

/** Returns the words of an iptables-save rule line (double quotes with backslash escapes). */
export function splitIptablesLine(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    if (line[i] === " ") {
      i++;
      continue;
    }
    let w = "";
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\" && i + 1 < line.length) i++;
        w += line[i];
        i++;
      }
      i++;
    } else {
      while (i < line.length && line[i] !== " ") w += line[i++];
    }
    words.push(w);
  }
  return words;
}

function iptCidr(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(v);
  if (!m) return undefined;
  return ipv4NetworkCidr(m[1] ?? "", m[2] === undefined ? 32 : Number(m[2]));
}

const port = (v: string | undefined): number | undefined =>
  v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;

/** Returns the rule decoded from iptables arguments, or undefined when it is not one of ours. */
export function decodeIptablesRule(words: readonly string[]): Rule | undefined {
  const r: Partial<Rule> = {};
  const modules = new Set(["tcp", "udp", "addrtype", "conntrack"]);
  for (let i = 0; i < words.length; i++) {
    const opt = words[i];
    const val = words[i + 1];
    const take = (): string | undefined => (i++, val);
    switch (opt) {
      case "-s":
      case "-d": {
        const c = iptCidr(take());
        const key = opt === "-s" ? "saddr" : "daddr";
        if (c === undefined || r[key] !== undefined) return undefined;
        r[key] = c;
        break;
      }
      case "-i":
      case "-o": {
        const v = take();
        const key = opt === "-i" ? "iif" : "oif";
        if (v === undefined || r[key] !== undefined) return undefined;
        r[key] = v;
        break;
      }
      case "-p": {
        const v = take();
        if ((v !== "tcp" && v !== "udp") || r.proto !== undefined) return undefined;
        r.proto = v;
        break;
      }
      case "-m":
        if (!modules.has(take() ?? "")) return undefined;
        break;
      case "--sport":
      case "--dport": {
        const p = port(take());
        const key = opt === "--sport" ? "sport" : "dport";
        if (p === undefined || r[key] !== undefined) return undefined;
        r[key] = p;
        break;
      }
      case "--dst-type":
        if (take() !== "LOCAL" || r.local) return undefined;
        r.local = true;
        break;
      case "--ctstate": {
        const states = (take() ?? "").split(",").sort().join(",");
        if (states === "ESTABLISHED,RELATED" && !r.established) r.established = true;
        else if (states === "DNAT" && !r.dnatted) r.dnatted = true;
        else return undefined;
        break;
      }
      case "-j": {
        const target = take();
        if (r.action !== undefined) return undefined;
        if (target === "MASQUERADE") r.action = "masquerade";
        else if (target === "ACCEPT") r.action = "accept";
        else if (target === "SNAT") r.action = "snat";
        else if (target === "DNAT") r.action = "dnat";
        else return undefined;
        break;
      }
      case "--to-source": {
        const v = take();
        if (r.action !== "snat" || v === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(v))
          return undefined;
        r.to = v;
        break;
      }
      case "--to-destination": {
        const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(take() ?? "");
        if (r.action !== "dnat" || !m) return undefined;
        r.to = m[1] ?? "";
        r.toPort = Number(m[2]);
        break;
      }
      default:
        return undefined;
    }
  }
  if (r.action === undefined) return undefined;
  if (
    (r.action === "snat" && r.to === undefined) ||
    (r.action === "dnat" && r.toPort === undefined)
  )
    return undefined;
  if ((r.sport !== undefined || r.dport !== undefined) && r.proto === undefined) return undefined;
  return r as Rule;
}

/** Returns what iptables holds of the provider's chains and jumps for a NatRule, from iptables-save. */
export function parseIptablesSave(text: string, name: string): ObservedRuleset | undefined {
  const byChain = new Map<string, ChainName>(CHAIN_NAMES.map((c) => [iptablesChain(name, c), c]));
  const out: ObservedRuleset = { chains: {}, extras: [], jumps: [] };
  let table = "";
  let found = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) {
      table = line.slice(1);
      continue;
    }
    if (line.startsWith(":")) {
      const c = byChain.get(line.slice(1).split(" ")[0] ?? "");
      if (c !== undefined && CHAIN_SPECS[c].table === table) {
        out.chains[c] = { rules: [], problems: [] };
        found = true;
      }
      continue;
    }
    if (!line.startsWith("-A ")) continue;
    const [, chainName = "", ...words] = splitIptablesLine(line);
    const own = byChain.get(chainName);
    if (own !== undefined && CHAIN_SPECS[own].table === table) {
      const rule = decodeIptablesRule(words);
      const chain = out.chains[own] ?? { rules: [], problems: [] };
      out.chains[own] = chain;
      chain.rules.push(rule ? { rule } : { foreign: `${own}: ${words.join(" ")}` });
      continue;
    }
    const j = words.indexOf("-j");
    const target = j >= 0 ? byChain.get(words[j + 1] ?? "") : undefined;
    if (target === undefined || (table !== "nat" && table !== "filter")) continue;
    const s = CHAIN_SPECS[target];
    const mine =
      table === s.table &&
      chainName === s.builtin &&
      words.join("\u0000") ===
        ["-m", "comment", "--comment", jumpComment(name), "-j", iptablesChain(name, target)].join(
          "\u0000",
        );
    out.jumps.push({ table, line, own: mine, chain: target });
    found = true;
  }
  if (!found) return undefined;
  for (const c of CHAIN_NAMES) {
    const chain = out.chains[c];
    if (!chain) continue;
    const n = out.jumps.filter((j) => j.own && j.chain === c).length;
    const builtin = CHAIN_SPECS[c].builtin;
    if (n === 0)
      chain.problems.push(`chain ${iptablesChain(name, c)} is not jumped to from ${builtin}`);
    if (n > 1)
      chain.problems.push(
        `chain ${iptablesChain(name, c)} is jumped to ${n} times from ${builtin}`,
      );
  }
  return out;
}
