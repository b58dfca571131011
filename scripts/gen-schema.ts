// Generates schema.json (the Pulumi package schema) from the zod schemas of the resource registry.
// Run: npx tsx scripts/gen-schema.ts   (test/unit/schema.test.ts fails when schema.json is stale)
import * as fs from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";
import { z } from "zod";
import { Connection } from "../provider/src/host/connection";
import {
  outputTypes,
  PLANNED_STEPS,
  resourceOutputs,
  type SchemaProperty,
} from "../provider/src/native/outputs";
import { resourceModules } from "../provider/src/registry";

const ROOT = path.resolve(__dirname, "..");
export const SCHEMA_PATH = path.join(ROOT, "schema.json");
const PKG = "hypervisor";
const CONNECTION_TYPE = `${PKG}:index:Connection`;

/** Connection fields that hold credentials: secret in the schema (and in state). */
export const SECRET_CONNECTION_FIELDS = ["password", "privateKey", "privateKeyPassword"];

// Connection fields documented nowhere else (their names follow @pulumi/command).
const CONNECTION_DOCS: Record<string, string> = {
  host: "The host's address or name.",
  port: "The SSH port.",
  user: "The user to log in as.",
  password: "The user's password (secret).",
  privateKey: "A private key in OpenSSH or PEM format (secret).",
  privateKeyPassword: "The private key's passphrase (secret).",
  agentSocketPath: "The ssh-agent socket to authenticate with.",
};

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  $ref?: string;
};

// ---- descriptions: the JSDoc beside each field of a z.object({...}) literal ----

interface ObjectDocs {
  /** The const the literal initialises (a named schema type), when it is the const's object. */
  constName: string | undefined;
  docs: Record<string, string>;
}

function jsDocOf(node: ts.Node, sf: ts.SourceFile): string | undefined {
  const ranges = ts.getLeadingCommentRanges(sf.text, node.getFullStart()) ?? [];
  const last = ranges.filter((r) => sf.text.slice(r.pos, r.pos + 3) === "/**").pop();
  if (!last) return undefined;
  return sf.text
    .slice(last.pos + 3, last.end - 2)
    .split("\n")
    .map((l) => l.replace(/^\s*\*?\s?/, "").trim())
    .filter((l) => l !== "")
    .join(" ");
}

/** Returns the docs of every `z.object({...})` literal in a file, keyed by its sorted field names. */
function objectDocsOf(file: string): Map<string, ObjectDocs> {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const out = new Map<string, ObjectDocs>();
  const visit = (node: ts.Node, constName: string | undefined): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name)) {
      constName = node.name.text;
    }
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === "object" &&
      ts.isIdentifier(node.expression.expression) &&
      node.expression.expression.text === "z" &&
      node.arguments[0] &&
      ts.isObjectLiteralExpression(node.arguments[0])
    ) {
      const docs: Record<string, string> = {};
      const keys: string[] = [];
      for (const p of node.arguments[0].properties) {
        if (!p.name || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue;
        keys.push(p.name.text);
        const doc = jsDocOf(p, sf);
        if (doc) docs[p.name.text] = doc;
      }
      out.set(keys.sort().join(","), { constName, docs });
      // Inner literals are not the const's own object.
      constName = undefined;
    }
    ts.forEachChild(node, (c) => visit(c, constName));
  };
  visit(sf, undefined);
  return out;
}

/** Returns the JSDoc of each property of an exported interface in an SDK file (fallback docs). */
function interfaceDocsOf(file: string, name: string): Record<string, string> {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const docs: Record<string, string> = {};
  sf.forEachChild((n) => {
    if (ts.isInterfaceDeclaration(n) && n.name.text === name) {
      for (const m of n.members) {
        if (m.name && ts.isIdentifier(m.name)) {
          const d = jsDocOf(m, sf);
          if (d) docs[m.name.text] = d;
        }
      }
    }
  });
  return docs;
}

function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}

function resourceDoc(type: string): string {
  const file = path.join(ROOT, "provider", "src", "resources", kebab(type), "index.ts");
  const sf = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  let doc: string | undefined;
  sf.forEachChild((n) => {
    if (
      ts.isVariableStatement(n) &&
      n.declarationList.declarations[0]?.name.getText(sf).endsWith("Module")
    ) {
      doc = jsDocOf(n, sf);
    }
  });
  return (doc ?? `A ${type}.`).replace(/^The (\w+) resource: /, (_m, t: string) => `${t}: `);
}

// ---- zod -> JSON schema -> Pulumi property specs ----

interface Converter {
  types: Record<string, unknown>;
  docs: Map<string, ObjectDocs>;
}

function withDefault(description: string | undefined, def: unknown): string | undefined {
  if (def === undefined || def === null) return description;
  const shown = `Default: \`${JSON.stringify(def)}\`.`;
  if (description === undefined) return shown;
  if (/\bdefault\b/i.test(description)) return description;
  return `${description.replace(/\.?$/, ".")} ${shown}`;
}

// A schema built with .extend() has more fields than its literal: take the largest literal whose
// fields it all has.
function closestDocs(all: Map<string, ObjectDocs>, keys: string[]): ObjectDocs | undefined {
  let best: { size: number; docs: ObjectDocs } | undefined;
  for (const [k, docs] of all) {
    const fields = k.split(",");
    if (fields.length * 2 < keys.length || !fields.every((f) => keys.includes(f))) continue;
    if (!best || fields.length > best.size) best = { size: fields.length, docs };
  }
  return best?.docs;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function convertObject(
  c: Converter,
  js: JsonSchema,
  fallbackName: string,
  topDocs?: Record<string, string>,
): { name: string; properties: Record<string, SchemaProperty>; required: string[] } {
  const keys = Object.keys(js.properties ?? {});
  const found = c.docs.get([...keys].sort().join(",")) ?? closestDocs(c.docs, keys);
  const docs = { ...(topDocs ?? {}), ...(found?.docs ?? {}) };
  const name =
    found?.constName && !/Inputs$|^base/.test(found.constName) ? found.constName : fallbackName;
  const properties: Record<string, SchemaProperty> = {};
  for (const key of keys) {
    const p = convertProperty(c, js.properties![key]!, `${name}${capitalize(key)}`);
    const description = withDefault(docs[key] ?? p.description, js.properties![key]!.default);
    properties[key] = { ...p, ...(description ? { description } : {}) };
  }
  return { name, properties, required: js.required ?? [] };
}

function convertProperty(c: Converter, js: JsonSchema, nameHint: string): SchemaProperty {
  if (js.$ref === "#") return { $ref: `#/types/${CONNECTION_TYPE}` };
  const variants = (js.anyOf ?? []).filter((v) => v.type !== "null");
  if (variants.length === 1)
    return convertProperty(c, { ...variants[0]!, default: js.default }, nameHint);
  if (variants.length > 1) {
    return { oneOf: variants.map((v) => convertProperty(c, v, nameHint)) };
  }
  const types = (Array.isArray(js.type) ? js.type : js.type ? [js.type] : []).filter(
    (t) => t !== "null",
  );
  if (types.length > 1)
    return { oneOf: types.map((t) => convertProperty(c, { type: t }, nameHint)) };
  const t = types[0];
  if (t === "array") {
    const singular = nameHint.replace(/ies$/, "y").replace(/s$/, "");
    return { type: "array", items: convertProperty(c, js.items ?? {}, singular) };
  }
  if (t === "object") {
    const o = convertObject(c, js, nameHint);
    const token = `${PKG}:index:${o.name}`;
    c.types[token] = {
      type: "object",
      properties: o.properties,
      ...(o.required.length ? { required: o.required } : {}),
    };
    return { $ref: `#/types/${token}` };
  }
  if (t === "string" && js.enum) {
    return {
      type: "string",
      description: `One of ${js.enum.map((v) => `\`${String(v)}\``).join(", ")}.`,
    };
  }
  if (t === "string" || t === "integer" || t === "number" || t === "boolean") return { type: t };
  // Unrepresentable in JSON schema (custom checks): accept any value, described by its docs.
  return { $ref: "pulumi.json#/Any" };
}

function toJson(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
}

/** Returns the Pulumi package schema of every registered resource, the Connection and Provider. */
export function generateSchema(): Record<string, unknown> {
  const types: Record<string, unknown> = {};
  const connDocs = objectDocsOf(path.join(ROOT, "provider", "src", "host", "connection.ts"));
  const connFallback = {
    ...CONNECTION_DOCS,
    ...interfaceDocsOf(path.join(ROOT, "sdk", "connection.ts"), "ConnectionArgs"),
  };
  const cc: Converter = { types, docs: connDocs };
  const conn = convertObject(cc, toJson(Connection), "Connection", connFallback);
  for (const f of SECRET_CONNECTION_FIELDS)
    conn.properties[f] = { ...conn.properties[f]!, secret: true };
  // sudo's object variant carries a password.
  const sudoType = types[`${PKG}:index:ConnectionSudo`] as
    { properties: Record<string, SchemaProperty> } | undefined;
  if (sudoType?.properties["password"]) {
    sudoType.properties["password"] = {
      ...sudoType.properties["password"],
      secret: true,
      description: "The sudo password, sent on stdin (secret).",
    };
  }
  types[CONNECTION_TYPE] = {
    type: "object",
    description:
      "How to reach a host over SSH. The fields are those of `@pulumi/command`'s `remote.ConnectionArgs`; " +
      "`knownHostsFile`, `insecureIgnoreHostKey` and `sudo` are additions. `proxy` nests to any depth.",
    properties: conn.properties,
    required: conn.required,
  };
  for (const [token, t] of Object.entries(outputTypes)) types[token] = { type: "object", ...t };

  const connectionProperty: SchemaProperty = {
    $ref: `#/types/${CONNECTION_TYPE}`,
    secret: true,
    description:
      "How to reach the host (secret). Optional with the native provider: when unset, the provider's " +
      "connection is used. A change of host, port or proxy replaces the resource; credentials rotate in place.",
  };

  const resources: Record<string, unknown> = {};
  for (const [type, mod] of Object.entries(resourceModules).sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    const dir = path.join(ROOT, "provider", "src", "resources", kebab(type));
    const docs = objectDocsOf(path.join(dir, "schema.ts"));
    const fallback = interfaceDocsOf(path.join(ROOT, "sdk", `${kebab(type)}.ts`), `${type}Args`);
    const rc: Converter = { types, docs };
    const js = toJson(mod.inputs as z.ZodType);
    const o = convertObject(rc, js, type, fallback);
    for (const key of mod.identity) {
      if (o.properties[key]) o.properties[key] = { ...o.properties[key], replaceOnChanges: true };
    }
    const inputProperties = { connection: connectionProperty, ...o.properties };
    const withDefaults = Object.keys(js.properties ?? {}).filter(
      (k) => js.properties![k]!.default !== undefined && js.properties![k]!.default !== null,
    );
    resources[`${PKG}:index:${type}`] = {
      description: resourceDoc(type),
      inputProperties,
      requiredInputs: o.required,
      properties: {
        ...inputProperties,
        ...(resourceOutputs[type] ?? {}),
        plannedSteps: PLANNED_STEPS,
      },
      required: [...new Set([...o.required, ...withDefaults])],
    };
  }

  // Stack config (`pulumi config set hypervisor:host ...`) takes the connection's fields flat, or
  // the whole object as `hypervisor:connection`.
  const variables: Record<string, SchemaProperty> = {
    connection: {
      $ref: `#/types/${CONNECTION_TYPE}`,
      secret: true,
      description:
        "The default provider's connection as one object (its fields may also be set one by one).",
    },
  };
  for (const [k, p] of Object.entries(conn.properties)) variables[k] = p;

  return {
    name: PKG,
    displayName: "Hypervisor",
    description:
      "Hypervisor networking (bridges, taps, dnsmasq, NAT) and QEMU guests on Linux hosts, managed over SSH.",
    keywords: [
      "pulumi",
      "hypervisor",
      "qemu",
      "bridge",
      "dnsmasq",
      "nftables",
      "category/infrastructure",
    ],
    license: "Apache-2.0",
    meta: { moduleFormat: "(.*)" },
    config: { variables },
    provider: {
      description:
        "One host: resources that use this provider (the `provider` resource option) reach the host " +
        "through its connection unless they set their own. Only a change of host, port or proxy " +
        "replaces the provider's resources.",
      inputProperties: { connection: connectionProperty },
      properties: { connection: connectionProperty },
    },
    types: Object.fromEntries(Object.entries(types).sort(([a], [b]) => a.localeCompare(b))),
    resources,
    language: {
      nodejs: { packageName: "pulumi-hypervisor" },
    },
  };
}

/** Returns schema.json's text as the generator writes it. */
export function schemaText(): string {
  return `${JSON.stringify(generateSchema(), null, 2)}\n`;
}

if (require.main === module) {
  fs.writeFileSync(SCHEMA_PATH, schemaText());
  process.stdout.write(`wrote ${path.relative(process.cwd(), SCHEMA_PATH)}\n`);
}
