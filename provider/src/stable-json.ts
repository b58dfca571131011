// Code-point order, not localeCompare: the text must not depend on the process's locale.
const byKey = ([a]: [string, unknown], [b]: [string, unknown]): number =>
  a < b ? -1 : a > b ? 1 : 0;

/**
 * Returns what JSON.stringify returns, with object keys sorted, so equal values give equal text
 * whatever order their fields came in (undefined for undefined, as JSON.stringify does).
 */
export function stableJson(value: unknown): string | undefined {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(byKey))
      : v,
  );
}
