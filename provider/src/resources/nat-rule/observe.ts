import { z } from "zod";
import type { Host } from "../../host/host";
import { ipv4NetworkCidr } from "../../net";
import { parseSysctlProbe, SYSCTL_PROBE } from "../../sysctl";
import { CHAIN_SPECS, iptablesChain, jumpComment, nftTableName, sysctlOwner } from "./render";
import {
  CHAIN_NAMES,
  type ChainName,
  type NatRuleState,
  type ObservedChain,
  type ObservedRule,
  type ObservedRuleset,
  type Rule,
} from "./schema";

export const SEPARATOR = "--pulumi-hypervisor--";
/** Printed before what a listing tool said when it failed. */
export const FAILED = "pulumi-hypervisor-failed:";
export const IP_FORWARD = "net/ipv4/ip_forward";

// One round trip: which tools exist, the provider's nft table (only that table: `list tables` first,
// so an absent table is not confused with a failing nft), iptables-save (every table the host has,
// without loading modules), and the ip_forward claim. $1 = table, $2 = sysctl owner.
const OBSERVE_SCRIPT = [
  "t=$1 owner=$2",
  `probe_sysctl() {\n${SYSCTL_PROBE}\n}`,
  'have() { command -v "$1" >/dev/null 2>&1; }',
  'if have nft; then echo "nft yes"; else echo "nft no"; fi',
  'if have iptables-save && have iptables-restore; then echo "iptables yes"; else echo "iptables no"; fi',
  `echo ${SEPARATOR}`,
  "if have nft; then",
  "  if tables=$(nft list tables ip 2>&1); then",
  '    if printf \'%s\\n\' "$tables" | grep -qxF -e "table ip $t"; then',
  `      if out=$(nft -j list table ip "$t" 2>&1); then printf '%s\\n' "$out"; else printf '%s %s\\n' "${FAILED}" "$out"; fi`,
  "    fi",
  `  else printf '%s %s\\n' "${FAILED}" "$tables"; fi`,
  "fi",
  `echo ${SEPARATOR}`,
  "if have iptables-save; then",
  `  if out=$(iptables-save 2>&1); then printf '%s\\n' "$out"; else printf '%s %s\\n' "${FAILED}" "$out"; fi`,
  "fi",
  `echo ${SEPARATOR}`,
  `probe_sysctl "$owner" ${IP_FORWARD}`,
].join("\n");

/** Returns the argv of the single observe probe. */
export function observeArgv(name: string): string[] {
  return ["sh", "-c", OBSERVE_SCRIPT, "sh", nftTableName(name), sysctlOwner(name)];
}

// ---------------------------------------------------------------------------------------------
// nft -j

// Host output is validated: a changed nft JSON schema fails loudly instead of planning nonsense.
const NftChain = z
  .object({
    family: z.string(),
    table: z.string(),
    name: z.string(),
    type: z.string().optional(),
    hook: z.string().optional(),
    prio: z.number().optional(),
    policy: z.string().optional(),
  })
  .loose();
const NftRule = z
  .object({
    family: z.string(),
    table: z.string(),
    chain: z.string(),
    handle: z.number().optional(),
    comment: z.string().optional(),
    expr: z.array(z.unknown()),
  })
  .loose();
const NftOutput = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });

type Json = unknown;
const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const keysAre = (v: Record<string, Json>, ...keys: string[]): boolean => {
  const k = Object.keys(v).sort();
  return k.length === keys.length && [...keys].sort().every((x, i) => k[i] === x);
};

function nftCidr(v: Json): string | undefined {
  if (typeof v === "string" && /^\d+\.\d+\.\d+\.\d+$/.test(v)) return `${v}/32`;
  if (isObject(v) && isObject(v["prefix"])) {
    const p = v["prefix"];
    if (typeof p["addr"] === "string" && typeof p["len"] === "number")
      return ipv4NetworkCidr(p["addr"], p["len"]);
  }
  return undefined;
}

function asSet(v: Json): string[] | undefined {
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return [...v].sort();
  return undefined;
}

/** Applies one nft match to the rule; returns false when the match is outside the vocabulary. */
function applyNftMatch(r: Partial<Rule>, m: Record<string, Json>): boolean {
  const { op, left, right } = m;
  if (!isObject(left)) return false;
  const meta = left["meta"];
  const payload = left["payload"];
  if (op === "==" && isObject(meta) && typeof right === "string") {
    if (meta["key"] === "iifname" && r.iif === undefined) return ((r.iif = right), true);
    if (meta["key"] === "oifname" && r.oif === undefined) return ((r.oif = right), true);
    return false;
  }
  if (op === "==" && isObject(payload) && payload["protocol"] === "ip") {
    const cidr = nftCidr(right);
    if (cidr === undefined) return false;
    if (payload["field"] === "saddr" && r.saddr === undefined) return ((r.saddr = cidr), true);
    if (payload["field"] === "daddr" && r.daddr === undefined) return ((r.daddr = cidr), true);
    return false;
  }
  if (
    op === "==" &&
    isObject(payload) &&
    (payload["protocol"] === "tcp" || payload["protocol"] === "udp")
  ) {
    if (typeof right !== "number" || (r.proto !== undefined && r.proto !== payload["protocol"]))
      return false;
    r.proto = payload["protocol"];
    if (payload["field"] === "sport" && r.sport === undefined) return ((r.sport = right), true);
    if (payload["field"] === "dport" && r.dport === undefined) return ((r.dport = right), true);
    return false;
  }
  const fib = left["fib"];
  if (op === "==" && isObject(fib) && fib["result"] === "type" && right === "local") {
    const flags = asSet(fib["flags"]);
    if (flags?.length === 1 && flags[0] === "daddr" && !r.local) return ((r.local = true), true);
    return false;
  }
  const ct = left["ct"];
  if ((op === "in" || op === "==") && isObject(ct) && keysAre(ct, "key")) {
    const values = asSet(right);
    if (ct["key"] === "state" && values?.join(",") === "established,related" && !r.established) {
      return ((r.established = true), true);
    }
    if (ct["key"] === "status" && values?.join(",") === "dnat" && !r.dnatted)
      return ((r.dnatted = true), true);
  }
  return false;
}

/** Returns the rule decoded from nft JSON expressions, or undefined when it is not one of ours. */
export function decodeNftRule(expr: readonly Json[]): Rule | undefined {
  const r: Partial<Rule> = {};
  for (const [i, e] of expr.entries()) {
    if (!isObject(e) || Object.keys(e).length !== 1) return undefined;
    const last = i === expr.length - 1;
    if (isObject(e["match"])) {
      if (last || !applyNftMatch(r, e["match"])) return undefined;
    } else if ("masquerade" in e && e["masquerade"] === null && last) {
      r.action = "masquerade";
    } else if ("accept" in e && e["accept"] === null && last) {
      r.action = "accept";
    } else if (
      isObject(e["snat"]) &&
      keysAre(e["snat"], "addr") &&
      typeof e["snat"]["addr"] === "string" &&
      last
    ) {
      r.action = "snat";
      r.to = e["snat"]["addr"];
    } else if (
      isObject(e["dnat"]) &&
      keysAre(e["dnat"], "addr", "port") &&
      typeof e["dnat"]["addr"] === "string" &&
      typeof e["dnat"]["port"] === "number" &&
      last
    ) {
      r.action = "dnat";
      r.to = e["dnat"]["addr"];
      r.toPort = e["dnat"]["port"];
    } else {
      return undefined;
    }
  }
  return r.action === undefined ? undefined : (r as Rule);
}

const compact = (v: Json): string => {
  const s = JSON.stringify(v);
  return s.length > 300 ? `${s.slice(0, 297)}...` : s;
};

function reason(e: unknown): string {
  if (e instanceof z.ZodError)
    return e.issues.map((i) => `${i.path.join(".") || "output"}: ${i.message}`).join("; ");
  return e instanceof Error ? e.message : String(e);
}

/** Returns what the provider's nft table holds, parsed from `nft -j list table ip <t>`. */
export function parseNftTable(text: string, table: string): ObservedRuleset | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  try {
    return parseNftItems(NftOutput.parse(JSON.parse(trimmed)).nftables, table);
  } catch (e) {
    throw new Error(`unexpected output of nft -j list table ip ${table}: ${reason(e)}`);
  }
}

function parseNftItems(items: Array<Record<string, Json>>, table: string): ObservedRuleset {
  const out: ObservedRuleset = { chains: {}, extras: [], jumps: [] };
  let sawTable = false;
  const ours = (c: string): c is ChainName => (CHAIN_NAMES as readonly string[]).includes(c);
  for (const item of items) {
    const [kind] = Object.keys(item);
    const body = kind !== undefined ? item[kind] : undefined;
    if (kind === "metainfo") continue;
    if (kind === "table") {
      sawTable = true;
      continue;
    }
    if (kind === "chain") {
      const c = NftChain.parse(body);
      if (!ours(c.name)) {
        out.extras.push(`chain ${c.name}`);
        continue;
      }
      const s = CHAIN_SPECS[c.name];
      const problems: string[] = [];
      const is = `type ${c.type ?? "none"} hook ${c.hook ?? "none"} priority ${c.prio ?? "none"} policy ${c.policy ?? "none"}`;
      const want = `type ${s.type} hook ${s.hook} priority ${s.prio} policy accept`;
      if (is !== want) problems.push(`chain ${c.name} is ${is}, not ${want}`);
      out.chains[c.name] = { rules: out.chains[c.name]?.rules ?? [], problems };
      continue;
    }
    if (kind === "rule") {
      const r = NftRule.parse(body);
      const chain: ObservedChain | undefined = ours(r.chain) ? out.chains[r.chain] : undefined;
      if (!chain) {
        out.extras.push(`rule in chain ${r.chain}: ${compact(r.expr)}`);
        continue;
      }
      const rule = r.comment === undefined ? decodeNftRule(r.expr) : undefined;
      chain.rules.push(
        rule
          ? { rule }
          : {
              foreign: `${r.chain}: ${compact(r.expr)}${r.comment !== undefined ? ` comment ${JSON.stringify(r.comment)}` : ""}`,
            },
      );
      continue;
    }
    out.extras.push(`${kind ?? "object"} ${compact(body)}`);
  }
  if (!sawTable) throw new Error(`no table ${table} in it`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// iptables-save

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

// ---------------------------------------------------------------------------------------------
// The whole probe

function failure(section: string): string | undefined {
  const i = section.indexOf(FAILED);
  return i >= 0 ? section.slice(i + FAILED.length).trim() || "failed without output" : undefined;
}

/** Returns the NatRule state parsed from the probe's output. */
export function parseNatRuleState(name: string, stdout: string): NatRuleState {
  const [tools = "", nftText = "", iptText = "", sysctl = ""] = stdout.split(`${SEPARATOR}\n`);
  const toolLines = tools.split("\n");
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
    ipForward: parseSysctlProbe(sysctl)[IP_FORWARD],
  };
}

/** Observes the rule's nft table, iptables chains and ip_forward claim in one remote command. */
export async function observeNatRule(host: Host, name: string): Promise<NatRuleState> {
  const r = await host.run({ argv: observeArgv(name) });
  return parseNatRuleState(name, r.stdout);
}

/** Returns the decoded rules of an observed chain (foreign ones left out). */
export function decodedRules(chain: ObservedChain | undefined): Rule[] {
  return (chain?.rules ?? []).flatMap((r: ObservedRule) => ("rule" in r ? [r.rule] : []));
}
