// Property values as the engine sends them in protobuf Structs (sdk/go/common/resource/plugin/rpc.go):
// unknowns are a sentinel string, secrets are an object with a signature key.
import type {
  JavaScriptValue,
  Struct as StructMessage,
} from "google-protobuf/google/protobuf/struct_pb";
import { Struct } from "./pulumi-deps";

export type Props = Record<string, unknown>;

export { containsUnknown, UNKNOWN, valueAt } from "../unknown";

/** resource.SigKey and resource.SecretSig. */
export const SIG_KEY = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Returns the value wrapped as a secret. */
export function secret(value: unknown): Props {
  return { [SIG_KEY]: SECRET_SIG, value };
}

/** Whether the value is a secret wrapper. */
export function isSecret(value: unknown): value is { value: unknown } {
  return value !== null && typeof value === "object" && (value as Props)[SIG_KEY] === SECRET_SIG;
}

/** Returns the value with every secret wrapper removed (deeply). */
export function unwrapSecrets(value: unknown): unknown {
  if (isSecret(value)) return unwrapSecrets(value.value);
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
  }
  return value;
}

/** Returns the top-level keys whose values are, or contain, a secret. */
export function secretKeys(props: Props): string[] {
  const has = (v: unknown): boolean =>
    isSecret(v) ||
    (Array.isArray(v)
      ? v.some(has)
      : v !== null && typeof v === "object" && Object.values(v).some(has));
  return Object.keys(props).filter((k) => has(props[k]));
}

/** A Struct for a reply: undefined members dropped, undefined array elements as null. */
export function toStruct(props: Props): StructMessage {
  return Struct.fromJavaScript(jsonShaped(props) as Record<string, JavaScriptValue>);
}

function jsonShaped(value: unknown): unknown {
  if (value === undefined) return null;
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(jsonShaped);
  const out: Props = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = jsonShaped(v);
  return out;
}

/** The properties of a request Struct (empty when absent). */
export function fromStruct(s: StructMessage | undefined): Props {
  return s === undefined ? {} : s.toJavaScript();
}
