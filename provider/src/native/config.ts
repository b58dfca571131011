// The native provider's configuration: one `connection` (object or JSON string), or its fields set
// one by one (`pulumi config set hypervisor:host ...`, where every value arrives as a string).
import { Connection, CONNECTION_FIELDS, connectionIdentity } from "../host/connection";
import { propertyPath, type CheckFailure } from "../lifecycle";
import { containsUnknown, UNKNOWN, unknownAt } from "../unknown";
import { unwrapSecrets, type Props } from "./wire";

/** Keys the engine adds to every provider's inputs; not configuration of this provider. */
export const ENGINE_KEYS = new Set(["version", "pluginDownloadURL"]);

export interface ParsedConfig {
  /** The provider's connection, or undefined when none is configured (resources bring their own). */
  connection: Connection | undefined;
  failures: CheckFailure[];
  /**
   * Some value is computed by another resource and not known yet (a preview). `connection` is then
   * set only when where it leads (host, port, proxy) is known, without the unknown credentials.
   */
  unknown: boolean;
}

// Connection fields that say where it leads (connectionIdentity); the rest are credentials.
const WHERE_FIELDS = new Set(["host", "port", "proxy"]);

// Failure reasons never contain a value: configuration values can be credentials.
function decodeJson(key: string, value: unknown, failures: CheckFailure[]): unknown {
  // A generated SDK sends the JSON of an object with one unknown field as one unknown string.
  if (typeof value !== "string" || value === UNKNOWN) return value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    failures.push({ property: key, reason: `${key}: is not valid JSON` });
    return undefined;
  }
}

function decodeConnection(value: unknown, failures: CheckFailure[]): unknown {
  const v = decodeJson("connection", value, failures);
  if (v === undefined || v === null || v === UNKNOWN) return v ?? undefined;
  if (typeof v !== "object" || Array.isArray(v)) {
    failures.push({ property: "connection", reason: "connection: must be an object" });
    return undefined;
  }
  const out: Props = {};
  for (const [k, f] of Object.entries(v as Props)) {
    // non-string fields come JSON-encoded from stack config and generated SDKs
    out[k] = CONNECTION_FIELDS.get(k) === "json" ? decodeJson(`connection.${k}`, f, failures) : f;
  }
  return out;
}

/** Returns the provider's connection from its configuration, or the failures naming each property. */
export function parseProviderConfig(raw: Props): ParsedConfig {
  const props = unwrapSecrets(raw) as Props;
  const failures: CheckFailure[] = [];
  const flat: Props = {};
  let nested: unknown;
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || ENGINE_KEYS.has(k) || k.startsWith("__")) continue;
    if (k === "connection") nested = decodeConnection(v, failures);
    else if (CONNECTION_FIELDS.get(k) === "json") flat[k] = decodeJson(k, v, failures);
    else if (CONNECTION_FIELDS.get(k) === "string") flat[k] = v;
    else failures.push({ property: k, reason: `${k}: is not a configuration key of hypervisor` });
  }
  const unknown = containsUnknown(nested) || containsUnknown(flat);
  if (failures.length > 0) return { connection: undefined, failures, unknown };
  if (nested === undefined && Object.keys(flat).length === 0)
    return { connection: undefined, failures, unknown };
  if (nested === UNKNOWN) {
    // The whole connection is unknown: it is checked when the engine knows it.
    return { connection: undefined, failures: [], unknown };
  }
  // Fields set one by one refine the object (e.g. a rotated key over a shared connection).
  const merged = { ...((nested as Props | undefined) ?? {}), ...flat };
  const prefix = nested !== undefined ? "connection" : "";
  if (unknown) {
    // Known values are still checked; unknown ones are checked when the engine knows them.
    const known = fieldFailures(merged, prefix).filter(
      (f) => !unknownAt(merged, prefix ? f.property.slice(prefix.length + 1) : f.property),
    );
    if (known.length > 0) return { connection: undefined, failures: known, unknown };
    const whereUnknown = Object.keys(merged).some(
      (k) => WHERE_FIELDS.has(k) && containsUnknown(merged[k]),
    );
    const credentials = Object.fromEntries(
      Object.entries(merged).filter(([, v]) => !containsUnknown(v)),
    );
    const parsed = whereUnknown ? undefined : Connection.safeParse(credentials);
    return { connection: parsed?.success ? parsed.data : undefined, failures: [], unknown };
  }
  const parsed = Connection.safeParse(merged);
  if (!parsed.success)
    return { connection: undefined, failures: fieldFailures(merged, prefix), unknown };
  return { connection: parsed.data, failures: [], unknown };
}

function fieldFailures(fields: Props, prefix: string): CheckFailure[] {
  const parsed = Connection.safeParse(fields);
  if (parsed.success) return [];
  return parsed.error.issues.map((issue) => {
    const property = propertyPath([...(prefix ? [prefix] : []), ...issue.path]);
    return { property, reason: `${property || "connection"}: ${issue.message}` };
  });
}

/** Returns where a configuration leads ("" when it has no connection), without credentials. */
export function configIdentity(raw: Props): string {
  const c = parseProviderConfig(raw).connection;
  return c ? connectionIdentity(c) : "";
}
