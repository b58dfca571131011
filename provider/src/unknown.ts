// The engine's marker for a value another resource computes, not known during a preview
// (sdk/go/common/resource/plugin/rpc.go UnknownStringValue). Both front-ends receive it as this
// string: the dynamic-provider plugin hands Struct values over as they are, the native plugin too.

/** rpc.go UnknownStringValue: a value not known during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Whether the value is, or contains, an unknown. */
export function containsUnknown(value: unknown): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(containsUnknown);
  if (value !== null && typeof value === "object")
    return Object.values(value).some(containsUnknown);
  return false;
}

/** Returns the value at a property path, stopping at the first unknown or missing step. */
export function valueAt(props: Record<string, unknown>, path: readonly PropertyKey[]): unknown {
  let v: unknown = props;
  for (const part of path) {
    if (v === UNKNOWN || v === null || typeof v !== "object") return v;
    v = (v as Record<PropertyKey, unknown>)[part];
  }
  return v;
}

/** Returns ["addresses", 1, "x"] for the property "addresses[1].x". */
export function pathOf(property: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const m of property.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    out.push(m[2] !== undefined ? Number(m[2]) : (m[1] ?? ""));
  }
  return out;
}

/** Whether the property named by a check failure ("" for the whole object) is, or holds, an unknown. */
export function unknownAt(props: Record<string, unknown>, property: string): boolean {
  return containsUnknown(property === "" ? props : valueAt(props, pathOf(property)));
}
