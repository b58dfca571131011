import { z } from "zod";

/**
 * Returns a host command's JSON output validated by the schema; empty output is an empty list.
 * `keep` drops items of a list before validation (those the caller never reads cost nothing).
 */
export function parseHostJson<T>(
  schema: z.ZodType<T>,
  text: string,
  what: string,
  keep?: (item: unknown) => boolean,
): T {
  const trimmed = text.trim();
  try {
    const json: unknown = JSON.parse(trimmed === "" ? "[]" : trimmed);
    return schema.parse(keep && Array.isArray(json) ? json.filter(keep) : json);
  } catch (e) {
    throw new Error(`unexpected output of ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Returns a zod refinement that reports each repeated item of a list, by index. */
export function uniqueItems(what: string) {
  return (items: readonly string[], ctx: z.RefinementCtx): void => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(item)) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: `${what} ${JSON.stringify(item)} is listed twice`,
        });
      }
      seen.add(item);
    });
  };
}

/**
 * Returns the zod schema of one link of `ip -d -j link|addr show`, with its kind's info_data.
 * Fields not in the schema are dropped, not copied: `ip` prints dozens per link (a bridge's
 * info_data alone has about forty), and copying them made parsing a host's links about three
 * times slower.
 */
export function ipLinkSchema<T extends z.ZodRawShape>(infoData: T) {
  return z.object({
    ifindex: z.number(),
    ifname: z.string(),
    flags: z.array(z.string()).default([]),
    mtu: z.number(),
    address: z.string().optional(),
    master: z.string().optional(),
    linkinfo: z
      .object({
        info_kind: z.string().optional(),
        info_data: z.object(infoData).optional(),
      })
      .optional(),
  });
}

/**
 * Returns the outputs of `ip -j -batch -`, one per batch line in order: `ip` prints each command's
 * JSON on a line of its own. The first `required` must be there (a listing is never empty: "[]");
 * a later command that did not run (the batch stopped at its failure) gives "".
 */
export function ipBatchOutputs(
  text: string,
  count: number,
  required: number,
  what: string,
): string[] {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length < required) {
    throw new Error(`unexpected output of ${what}: ${lines.length} of ${required} listings`);
  }
  return Array.from({ length: count }, (_, i) => lines[i] ?? "");
}

/**
 * Returns a route of `ip -d -j route show` as plain `ip -j route show` prints it: `-d` adds the
 * defaults plain output leaves out (type unicast, protocol boot, scope global). Probes list routes
 * in the same `ip -d -batch` as the links, and what they record must not depend on that.
 */
export function withoutDetailDefaults<
  R extends {
    type?: string | undefined;
    protocol?: string | undefined;
    scope?: string | undefined;
  },
>(r: R): R {
  const out = { ...r };
  if (out.type === "unicast") delete out.type;
  if (out.protocol === "boot") delete out.protocol;
  if (out.scope === "global") delete out.scope;
  return out;
}

/**
 * Returns the main table's routes of both families parsed from `ip -d -j route show table all`
 * (the only listing that has both), without the defaults `-d` adds. A route without a table, as
 * `ip -j route show table main` prints it, is main's; the other tables' routes (a local and a
 * multicast one per link) are dropped unparsed.
 */
export function parseMainTableRoutes<
  R extends {
    type?: string | undefined;
    protocol?: string | undefined;
    scope?: string | undefined;
  },
>(schema: z.ZodType<R>, text: string): R[] {
  const main = (r: unknown): boolean => {
    const table = (r as { table?: unknown } | null)?.table;
    return table === undefined || table === "main";
  };
  return parseHostJson(z.array(schema), text, "ip -d -j route show table all", main).map((r) =>
    withoutDetailDefaults(r),
  );
}
