import { z } from "zod";
import { ipv4NetworkCidr } from "../../net";
import { CHAIN_SPECS, nftTableName, type RuleSet } from "./rules";
import {
  CHAIN_NAMES,
  type ChainName,
  type ObservedChain,
  type ObservedRuleset,
  type Rule,
} from "./schema";

// The nftables backend: a rule rendered in nft syntax (`nft -f`), and decoded from what
// `nft -j list table` prints.

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
 * Returns the rule's expressions as `nft -j list table` prints them after `nft -f` read
 * renderNftRule's text (the same matches in the same order): decodeNftRule's inverse.
 */
export function encodeNftRule(r: Rule): Json[] {
  const match = (left: Json, right: Json, op = "=="): Json => ({ match: { op, left, right } });
  const addr = (cidr: string): Json => {
    const [a = "", len = "32"] = cidr.split("/");
    return len === "32" ? a : { prefix: { addr: a, len: Number(len) } };
  };
  const out: Json[] = [];
  if (r.iif !== undefined) out.push(match({ meta: { key: "iifname" } }, r.iif));
  if (r.oif !== undefined) out.push(match({ meta: { key: "oifname" } }, r.oif));
  if (r.saddr !== undefined)
    out.push(match({ payload: { protocol: "ip", field: "saddr" } }, addr(r.saddr)));
  if (r.daddr !== undefined)
    out.push(match({ payload: { protocol: "ip", field: "daddr" } }, addr(r.daddr)));
  if (r.local) out.push(match({ fib: { result: "type", flags: ["daddr"] } }, "local"));
  if (r.sport !== undefined)
    out.push(match({ payload: { protocol: r.proto ?? "?", field: "sport" } }, r.sport));
  if (r.dport !== undefined)
    out.push(match({ payload: { protocol: r.proto ?? "?", field: "dport" } }, r.dport));
  if (r.sport === undefined && r.dport === undefined && r.proto !== undefined)
    out.push(match({ meta: { key: "l4proto" } }, r.proto));
  if (r.established) out.push(match({ ct: { key: "state" } }, ["established", "related"], "in"));
  if (r.dnatted) out.push(match({ ct: { key: "status" } }, "dnat", "in"));
  switch (r.action) {
    case "masquerade":
      out.push({ masquerade: null });
      break;
    case "snat":
      out.push({ snat: { addr: r.to ?? "?" } });
      break;
    case "dnat":
      out.push({
        dnat:
          r.toPort !== undefined ? { addr: r.to ?? "?", port: r.toPort } : { addr: r.to ?? "?" },
      });
      break;
    case "accept":
      out.push({ accept: null });
      break;
  }
  return out;
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
