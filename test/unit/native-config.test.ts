// The native provider's configuration: the keys it takes are the connection's fields, as the
// package schema states them; non-string fields arrive JSON-encoded from stack config.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CONNECTION_FIELDS } from "../../provider/src/host/connection";
import { parseProviderConfig } from "../../provider/src/native/config";

const schema = JSON.parse(
  readFileSync(path.join(__dirname, "..", "..", "schema.json"), "utf8"),
) as {
  types: Record<string, { properties: Record<string, { type?: string }> }>;
};

describe("native provider configuration", () => {
  it("takes every field of the schema's Connection, strings as they are and the rest as JSON", () => {
    const props = schema.types["hypervisor:index:Connection"]?.properties ?? {};
    expect([...CONNECTION_FIELDS.keys()].sort()).toEqual(Object.keys(props).sort());
    for (const [field, kind] of CONNECTION_FIELDS) {
      expect([field, kind]).toEqual([field, props[field]?.type === "string" ? "string" : "json"]);
    }
  });

  it("decodes fields set one by one: compression and port from their JSON", () => {
    const r = parseProviderConfig({ host: "hv1", port: "2222", compression: "true" });
    expect(r.failures).toEqual([]);
    expect(r.connection).toMatchObject({ host: "hv1", port: 2222, compression: true });
    const bad = parseProviderConfig({ host: "hv1", compression: "yes" });
    expect(bad.failures).toEqual([
      { property: "compression", reason: "compression: is not valid JSON" },
    ]);
    const wrong = parseProviderConfig({ host: "hv1", compression: "1" });
    expect(wrong.failures.map((f) => f.property)).toEqual(["compression"]);
  });
});
