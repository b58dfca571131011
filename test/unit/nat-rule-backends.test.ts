// Each NatRule backend decodes what it renders: seeded random rules from the provider's vocabulary
// go through nftables' and iptables' render/decode pairs and come back equal.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  decodeIptablesRule,
  renderIptablesRule,
  splitIptablesLine,
} from "../../provider/src/resources/nat-rule/iptables";
import { decodeNftRule, encodeNftRule } from "../../provider/src/resources/nat-rule/nftables";
import { ipv4NetworkCidr } from "../../provider/src/net";
import { rulesFor } from "../../provider/src/resources/nat-rule/rules";
import { CHAIN_NAMES, type Rule } from "../../provider/src/resources/nat-rule/schema";
import { guest, guestNat } from "../fixtures/nft-capture-inputs";
import { seededRandom } from "../support/seeded-random";

/** Returns a random rule of the kind the provider writes (ports only with a protocol, ...). */
function randomRule(next: () => number): Rule {
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  const maybe = (): boolean => next() < 0.5;
  const ip = (): string => [int(1, 223), int(0, 255), int(0, 255), int(0, 255)].join(".");
  const cidr = (): string => ipv4NetworkCidr(ip(), int(0, 32));
  const ifname = (): string =>
    Array.from({ length: int(1, 15) }, () => "abcdefghijklmnopqrstuvwxyz0123456789_-"[int(0, 37)])
      .join("")
      .replace(/^[-_0-9]/, "x");
  const r: Partial<Rule> = {};
  if (maybe()) r.iif = ifname();
  if (maybe()) r.oif = ifname();
  if (maybe()) r.saddr = cidr();
  if (maybe()) r.daddr = cidr();
  if (maybe()) r.local = true;
  if (maybe()) {
    r.proto = maybe() ? "tcp" : "udp";
    const which = int(0, 2);
    if (which !== 1) r.sport = int(1, 65535);
    if (which !== 0) r.dport = int(1, 65535);
  }
  if (maybe()) r.established = true;
  if (maybe()) r.dnatted = true;
  const action = (["masquerade", "snat", "dnat", "accept"] as const)[int(0, 3)] ?? "accept";
  r.action = action;
  if (action === "snat" || action === "dnat") r.to = ip();
  if (action === "dnat") r.toPort = int(1, 65535);
  return r as Rule;
}

const SEED = 20261130;
const N = 2000;

describe("each NatRule backend decodes what it renders (seeded random rules)", () => {
  const rules = (() => {
    const next = seededRandom(SEED);
    return Array.from({ length: N }, () => randomRule(next));
  })();

  it(`nftables: decodeNftRule(encodeNftRule(rule)) is the rule (seed ${SEED}, ${N} rules)`, () => {
    for (const [i, rule] of rules.entries()) {
      expect(decodeNftRule(encodeNftRule(rule)), `rule ${i}`).toEqual(rule);
    }
  });

  it(`iptables: decodeIptablesRule(renderIptablesRule(rule)) is the rule (seed ${SEED}, ${N} rules)`, () => {
    for (const [i, rule] of rules.entries()) {
      const words = splitIptablesLine(renderIptablesRule(rule));
      expect(decodeIptablesRule(words), `rule ${i}: ${words.join(" ")}`).toEqual(rule);
    }
  });

  // encodeNftRule stands for what nft prints after reading renderNftRule's text: the capture
  // (test/fixtures/nft-capture.sh) pins that to real nft output for every kind of match.
  it("nftables: encodeNftRule is what nft -j printed for the rules it was given", () => {
    const fixture = (f: string): unknown =>
      JSON.parse(readFileSync(join(__dirname, "..", "fixtures", f), "utf8"));
    const captured = (f: string, chain: string): unknown[] =>
      (fixture(f) as { nftables: Array<{ rule?: { chain: string; expr: unknown } }> }).nftables
        .filter((item) => item.rule?.chain === chain)
        .map((item) => item.rule?.expr);
    for (const chain of CHAIN_NAMES) {
      expect(captured("nft-j-list-table.json", chain)).toEqual(
        rulesFor(guestNat)[chain].map(encodeNftRule),
      );
      expect(captured("nft-j-list-table-snat.json", chain)).toEqual(
        rulesFor(guest)[chain].map(encodeNftRule),
      );
    }
  });
});
