// Generates, from the resource registry's zod schemas (inputs and outputs with `.describe()`, named
// types with `.meta({ id })`) and the connection's schema: schema.json, the dynamic SDK classes
// (sdk/<r>.ts), the native SDK classes (sdk/native/<r>.ts), both index files and the reference
// pages (docs/reference/*.md). Run: npm run generate   (test/unit/schema.test.ts fails when a
// generated file is stale)
import * as fs from "node:fs";
import * as path from "node:path";
import * as prettier from "prettier";
import { z } from "zod";
import { Connection } from "../provider/src/host/connection";
import { resourceModules } from "../provider/src/registry";
import type { ResourceModule } from "../provider/src/resource";

export const ROOT = path.resolve(__dirname, "..");
const PKG = "hypervisor";

/**
 * The `language` block of schema.json: the package names each Pulumi SDK generator would use.
 * Only nodejs is published today; go and python are here so `pulumi package gen-sdk` has them.
 */
// `pulumi import` prints `import * as hypervisor from "<nodejs.packageName>"` and then
// `new hypervisor.Bridge(...)`: the native classes live at `pulumi-hypervisor/native` (the root
// export holds the dynamic ones), so the printed program compiles as it is.
export const LANGUAGE_SETTINGS = {
  nodejs: { packageName: "pulumi-hypervisor/native" },
  go: { importBasePath: "github.com/pulumi-hypervisor/pulumi-hypervisor/sdk/go/hypervisor" },
  python: { packageName: "pulumi_hypervisor" },
};

const CONNECTION_DESCRIPTION = "How to reach the host (secret).";
const NATIVE_CONNECTION_DESCRIPTION =
  "How to reach the host (secret). Optional with the native provider: when unset, the provider's " +
  "connection is used. A change of host, port or proxy replaces the resource; credentials rotate in place.";
const PLANNED_STEPS_DESCRIPTION =
  "Set during preview only: the steps the provider would run on the host, each a summary and the " +
  "command (file contents and stdin are not shown). Absent when the host could not be observed.";
const PROVIDER_DESCRIPTION =
  "One host: resources that use this provider (the `provider` resource option) reach the host " +
  "through its connection unless they set their own. Only a change of host, port or proxy " +
  "replaces the provider's resources.";

// ---- the model: zod's JSON schema reduced to what the three outputs need ----

/** A property's type, with named types (`.meta({ id })`) by reference. */
export type TypeRef =
  | { kind: "string"; values?: string[] }
  | { kind: "integer" | "number" | "boolean" | "any" }
  | { kind: "array"; items: TypeRef }
  | { kind: "ref"; id: string }
  | { kind: "union"; of: TypeRef[] };

/** One property of a resource or a named type. */
export interface Field {
  name: string;
  type: TypeRef;
  description: string;
  /** Must be given: no default and not optional. */
  required: boolean;
  nullable: boolean;
  /** The default zod applies, when there is one (null counts as none). */
  default?: unknown;
  secret: boolean;
}

/** A named object type (`.meta({ id })`). */
export interface NamedType {
  id: string;
  description: string;
  fields: Field[];
}

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  default?: unknown;
  description?: string;
  secret?: boolean;
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
}

interface Converted {
  fields: Field[];
  /** Named types the schema refers to, by id. */
  types: Map<string, NamedType>;
}

/** Returns the fields of an object schema and the named types it refers to. */
export function convertSchema(schema: z.ZodType, io: "input" | "output", where: string): Converted {
  const root = z.toJSONSchema(schema, {
    io,
    unrepresentable: "any",
    // zod leaves out the default of a type that holds a transform (it is an output value);
    // users still get it when they leave the property out.
    override: ({ zodSchema, jsonSchema }) => {
      const def = zodSchema._zod.def;
      if (def.type === "default" && jsonSchema.default === undefined) {
        jsonSchema.default = JSON.parse(JSON.stringify(def.defaultValue)) as unknown;
      }
    },
  }) as JsonSchema;
  const defs = root.$defs ?? {};
  const types = new Map<string, NamedType>();
  const deref = (js: JsonSchema): JsonSchema => {
    // zod names wrappers it cannot inline (`__schema0`); fold them into the referring schema.
    const m = /^#\/\$defs\/(__schema\d+)$/.exec(js.$ref ?? "");
    if (!m) return js;
    const { $ref: _ref, ...rest } = js;
    return deref({ ...defs[m[1]!]!, ...rest });
  };
  const typeOf = (raw: JsonSchema, at: string): { type: TypeRef; nullable: boolean } => {
    const js = deref(raw);
    if (js.$ref !== undefined) {
      const id = /^#\/\$defs\/(.+)$/.exec(js.$ref)?.[1];
      if (id === undefined) throw new Error(`${at}: unexpected $ref ${js.$ref}`);
      if (!types.has(id)) {
        const def = defs[id];
        if (!def) throw new Error(`${at}: $ref to a missing type ${id}`);
        types.set(id, { id, description: "", fields: [] });
        const t = objectOf(def, id);
        types.set(id, { id, description: requireText(def.description, `type ${id}`), fields: t });
      }
      return { type: { kind: "ref", id }, nullable: false };
    }
    if (js.anyOf) {
      const nullable = js.anyOf.some((v) => v.type === "null");
      const of = js.anyOf.filter((v) => v.type !== "null").map((v) => typeOf(v, at).type);
      return { type: of.length === 1 ? of[0]! : { kind: "union", of }, nullable };
    }
    const all = Array.isArray(js.type) ? js.type : js.type !== undefined ? [js.type] : [];
    const nullable = all.includes("null");
    const names = all.filter((t) => t !== "null");
    if (names.length > 1) {
      const of = names.map((t) => typeOf({ type: t }, at).type);
      return { type: { kind: "union", of }, nullable };
    }
    const t = names[0];
    if (t === "array")
      return { type: { kind: "array", items: typeOf(js.items ?? {}, at).type }, nullable };
    if (t === "object") {
      throw new Error(`${at}: an object type needs a name: add .meta({ id, description })`);
    }
    if (t === "string") {
      const values = js.enum?.map(String);
      return { type: values ? { kind: "string", values } : { kind: "string" }, nullable };
    }
    if (t === "integer" || t === "number" || t === "boolean")
      return { type: { kind: t }, nullable };
    // Not representable in JSON schema: accept any value, described by its description.
    return { type: { kind: "any" }, nullable };
  };
  const objectOf = (raw: JsonSchema, at: string): Field[] => {
    const js = deref(raw);
    const required = new Set(js.required ?? []);
    return Object.entries(js.properties ?? {}).map(([name, p0]) => {
      const p = deref(p0);
      const { type, nullable } = typeOf(p, `${at}.${name}`);
      return {
        name,
        type,
        description: requireText(p.description, `${at}.${name}`),
        required: required.has(name),
        nullable,
        ...(p.default !== undefined && p.default !== null ? { default: p.default } : {}),
        secret: p.secret === true,
      };
    });
  };
  // A named root (the connection) is a reference to its own definition.
  if (root.$ref !== undefined) {
    const top = typeOf(root, where).type;
    return { fields: top.kind === "ref" ? types.get(top.id)!.fields : [], types };
  }
  return { fields: objectOf(root, where), types };
}

function requireText(s: string | undefined, at: string): string {
  if (s === undefined || s.trim() === "") throw new Error(`${at}: add a .describe("...")`);
  return s;
}

/** One resource as the generators see it. */
export interface ResourceModel {
  type: string;
  /** "bridge" for "Bridge": the file names. */
  file: string;
  description: string;
  noun: string;
  inputs: Field[];
  outputs: Field[];
  identity: readonly string[];
  types: Map<string, NamedType>;
}

/** Returns "dnsmasq-instance" for "DnsmasqInstance". */
export function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}

/** Returns the model of every registered resource, by type name in order. */
export function resourceModels(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  modules: Record<string, ResourceModule<any, any>> = resourceModules,
): ResourceModel[] {
  return Object.entries(modules)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, mod]) => {
      if (mod.type !== type) throw new Error(`registry: ${type} holds the module of ${mod.type}`);
      const inputs = convertSchema(mod.inputs as z.ZodType, "input", type);
      const outputs = convertSchema(mod.outputSchema, "output", `${type} outputs`);
      return {
        type,
        file: kebab(type),
        description: mod.description,
        noun: mod.noun,
        inputs: inputs.fields,
        outputs: outputs.fields,
        identity: mod.identity,
        types: new Map([...inputs.types, ...outputs.types]),
      };
    });
}

/** Returns the connection's fields and its named types (itself and ConnectionSudo). */
export function connectionModel(): Converted {
  return convertSchema(Connection, "input", "Connection");
}

// ---- descriptions with the facts the schema knows ----

function sentence(s: string): string {
  return /[.!?)]$/.test(s) ? s : `${s}.`;
}

function longDescription(f: Field, replaces?: string): string {
  let d = sentence(f.description);
  if (f.default !== undefined) d += ` Default: \`${JSON.stringify(f.default)}\`.`;
  if (replaces !== undefined) d += ` A change replaces the ${replaces}.`;
  if (f.secret && !/secret/i.test(d)) d += " Secret.";
  return d;
}

// ---- schema.json ----

interface SchemaProperty {
  type?: string;
  items?: SchemaProperty;
  $ref?: string;
  oneOf?: SchemaProperty[];
  description?: string;
  secret?: boolean;
  replaceOnChanges?: boolean;
}

function schemaTypeOf(t: TypeRef): SchemaProperty {
  switch (t.kind) {
    case "ref":
      return { $ref: `#/types/${PKG}:index:${t.id}` };
    case "array":
      return { type: "array", items: schemaTypeOf(t.items) };
    case "union":
      return { oneOf: t.of.map(schemaTypeOf) };
    case "any":
      return { $ref: "pulumi.json#/Any" };
    default:
      return { type: t.kind };
  }
}

function schemaProperty(f: Field, replaces?: string): SchemaProperty {
  return {
    ...schemaTypeOf(f.type),
    description: longDescription(f, replaces),
    ...(f.secret ? { secret: true } : {}),
    ...(replaces !== undefined ? { replaceOnChanges: true } : {}),
  };
}

function schemaObject(t: NamedType): Record<string, unknown> {
  const required = t.fields.filter((f) => f.required).map((f) => f.name);
  return {
    type: "object",
    description: t.description,
    properties: Object.fromEntries(t.fields.map((f) => [f.name, schemaProperty(f)])),
    ...(required.length ? { required } : {}),
  };
}

function allTypes(models: ResourceModel[], conn: Converted): Map<string, NamedType> {
  const out = new Map(conn.types);
  for (const m of models) {
    for (const [id, t] of m.types) {
      if (out.has(id) && JSON.stringify(out.get(id)) !== JSON.stringify(t)) {
        throw new Error(`two different types are named ${id}: give one another .meta({ id })`);
      }
      out.set(id, t);
    }
  }
  return out;
}

/** Returns the Pulumi package schema of every registered resource, the Connection and Provider. */
export function generateSchema(models = resourceModels(), conn = connectionModel()): object {
  const version = (
    JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string }
  ).version;
  const types = allTypes(models, conn);
  const connectionProperty: SchemaProperty = {
    $ref: `#/types/${PKG}:index:Connection`,
    secret: true,
    description: NATIVE_CONNECTION_DESCRIPTION,
  };
  const resources: Record<string, unknown> = {};
  for (const m of models) {
    const inputProperties = {
      connection: connectionProperty,
      ...Object.fromEntries(
        m.inputs.map((f) => [
          f.name,
          schemaProperty(f, m.identity.includes(f.name) ? m.noun : undefined),
        ]),
      ),
    };
    resources[`${PKG}:index:${m.type}`] = {
      description: m.description,
      inputProperties,
      requiredInputs: m.inputs.filter((f) => f.required).map((f) => f.name),
      properties: {
        ...inputProperties,
        ...Object.fromEntries(m.outputs.map((f) => [f.name, schemaProperty(f)])),
        plannedSteps: {
          type: "array",
          items: { type: "string" },
          description: PLANNED_STEPS_DESCRIPTION,
        },
      },
      required: m.inputs.filter((f) => f.required || f.default !== undefined).map((f) => f.name),
    };
  }
  // Stack config (`pulumi config set hypervisor:host ...`) takes the connection's fields flat, or
  // the whole object as `hypervisor:connection`.
  const variables: Record<string, SchemaProperty> = {
    connection: {
      $ref: `#/types/${PKG}:index:Connection`,
      secret: true,
      description:
        "The default provider's connection as one object (its fields may also be set one by one).",
    },
    ...Object.fromEntries(conn.fields.map((f) => [f.name, schemaProperty(f)])),
  };
  return {
    name: PKG,
    displayName: "Hypervisor",
    version,
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
      description: PROVIDER_DESCRIPTION,
      inputProperties: { connection: connectionProperty },
      properties: { connection: connectionProperty },
    },
    types: Object.fromEntries(
      [...types.values()]
        .sort((a, b) => a.id.localeCompare(b.id))
        .map((t) => [`${PKG}:index:${t.id}`, schemaObject(t)]),
    ),
    resources,
    language: LANGUAGE_SETTINGS,
  };
}

// ---- TypeScript SDK ----

const TS_HEADER = (from: string): string =>
  `// Generated by \`npm run generate\` from ${from}; do not edit.\n`;

function jsDoc(text: string, indent = ""): string {
  return `${indent}/** ${text.replace(/\*\//g, "*\\/")} */\n`;
}

function literal(values: string[]): string {
  return values.map((v) => JSON.stringify(v)).join(" | ");
}

/** The type inside `pulumi.Input<...>` of an argument. */
function tsInput(t: TypeRef): string {
  switch (t.kind) {
    case "string":
      return t.values ? literal(t.values) : "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "any":
      return "unknown";
    case "array":
      return `pulumi.Input<${tsInput(t.items)}>[]`;
    case "ref":
      return `${t.id}Args`;
    case "union":
      return t.of.map(tsInput).join(" | ");
  }
}

/** The type inside `pulumi.Output<...>` of a property; `argTypes` have an `...Args` interface. */
function tsOutput(t: TypeRef, argTypes: Set<string>): string {
  switch (t.kind) {
    case "array": {
      const inner = tsOutput(t.items, argTypes);
      return /[ |]/.test(inner) ? `(${inner})[]` : `${inner}[]`;
    }
    case "ref":
      return argTypes.has(t.id) ? `pulumi.Unwrap<${t.id}Args>` : t.id;
    case "union":
      return t.of.map((u) => tsOutput(u, argTypes)).join(" | ");
    default:
      return tsInput(t);
  }
}

function argsField(f: Field, replaces?: string): string {
  const type = `${tsInput(f.type)}${f.nullable ? " | null" : ""}`;
  return `${jsDoc(longDescription(f, replaces), "  ")}  ${f.name}${f.required ? "" : "?"}: pulumi.Input<${type}>;\n`;
}

function argsInterface(name: string, description: string, fields: string[]): string {
  return `${jsDoc(description)}export interface ${name} {\n${fields.join("")}}\n`;
}

/** Returns the named types each type refers to, transitively, in the order met. */
function refsOf(t: TypeRef, out: string[] = []): string[] {
  if (t.kind === "ref" && !out.includes(t.id)) out.push(t.id);
  if (t.kind === "array") refsOf(t.items, out);
  if (t.kind === "union") for (const u of t.of) refsOf(u, out);
  return out;
}

/** Returns where each named type's SDK interface lives: the first file that uses it. */
function typeHomes(models: ResourceModel[], conn: Converted): Map<string, string> {
  const homes = new Map<string, string>();
  for (const id of conn.types.keys()) homes.set(id, "connection");
  for (const m of models)
    for (const id of m.types.keys()) if (!homes.has(id)) homes.set(id, m.file);
  return homes;
}

/** Named types used as inputs anywhere (they get an `...Args` interface). */
function inputTypeIds(models: ResourceModel[], conn: Converted, all: Map<string, NamedType>) {
  const ids = new Set<string>();
  const visit = (t: TypeRef): void => {
    for (const id of refsOf(t)) {
      if (ids.has(id)) continue;
      ids.add(id);
      for (const f of all.get(id)?.fields ?? []) visit(f.type);
    }
  };
  for (const f of conn.fields) visit(f.type);
  for (const m of models) for (const f of m.inputs) visit(f.type);
  return ids;
}

interface SdkContext {
  all: Map<string, NamedType>;
  homes: Map<string, string>;
  argTypes: Set<string>;
}

function typeDeclarations(file: string, ctx: SdkContext): string {
  let out = "";
  for (const [id, home] of ctx.homes) {
    if (home !== file) continue;
    const t = ctx.all.get(id)!;
    if (ctx.argTypes.has(id)) {
      out += `\n${argsInterface(
        `${id}Args`,
        t.description,
        t.fields.map((f) => argsField(f)),
      )}`;
    } else {
      const fields = t.fields.map(
        (f) =>
          `${jsDoc(longDescription(f), "  ")}  ${f.name}${f.required ? "" : "?"}: ${tsOutput(f.type, ctx.argTypes)}${f.nullable ? " | null" : ""};\n`,
      );
      out += `\n${jsDoc(t.description)}export interface ${id} {\n${fields.join("")}}\n`;
    }
  }
  return out;
}

function importsOf(file: string, ids: string[], ctx: SdkContext, prefix: string): string {
  const byFile = new Map<string, string[]>();
  for (const id of ids) {
    const home = ctx.homes.get(id)!;
    if (home === file) continue;
    const name = ctx.argTypes.has(id) ? `${id}Args` : id;
    byFile.set(home, [...(byFile.get(home) ?? []), name]);
  }
  return [...byFile]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([f, names]) =>
        `import type { ${[...new Set(names)].sort().join(", ")} } from "${prefix}${f}";\n`,
    )
    .join("");
}

function dynamicFile(m: ResourceModel, ctx: SdkContext): string {
  const args = [
    `${jsDoc(CONNECTION_DESCRIPTION, "  ")}  connection: pulumi.Input<ConnectionArgs>;\n`,
    ...m.inputs.map((f) => argsField(f, m.identity.includes(f.name) ? m.noun : undefined)),
  ];
  const outputNames = new Set(m.outputs.map((f) => f.name));
  const props = [...m.inputs.filter((f) => !outputNames.has(f.name)), ...m.outputs].map((f) => {
    const known = f.required || f.default !== undefined;
    const type = `${tsOutput(f.type, ctx.argTypes)}${f.nullable ? " | null" : ""}${known ? "" : " | undefined"}`;
    return `${jsDoc(sentence(f.description), "  ")}  readonly ${f.name}: pulumi.Output<${type}>;\n`;
  });
  const used = [...m.inputs, ...m.outputs].flatMap((f) => refsOf(f.type));
  const imports =
    `import type * as pulumi from "@pulumi/pulumi";\n` +
    importsOf(m.file, ["Connection", ...used], ctx, "./") +
    `import { dynamicResource } from "./provider";\n`;
  return (
    TS_HEADER(`provider/src/resources/${m.file}`) +
    imports +
    typeDeclarations(m.file, ctx) +
    `\n${argsInterface(`${m.type}Args`, `The inputs of a ${m.type}.`, args)}` +
    `\n${jsDoc(`The properties of a ${m.type}, in both SDKs.`)}export interface ${m.type}Properties {\n${props.join("")}}\n` +
    `\n${jsDoc(`The output properties of a ${m.type}, in both SDKs.`)}export const ${outputNamesOf(m)} = ${JSON.stringify(m.outputs.map((f) => f.name))} as const;\n` +
    `\n${jsDoc(m.description)}export class ${m.type} extends dynamicResource<${m.type}Args, ${m.type}Properties>(\n` +
    `  ${JSON.stringify(m.type)},\n  ${outputNamesOf(m)},\n) {}\n`
  );
}

/** Returns the name of the constant listing a resource's outputs, e.g. qemuGuestOutputNames. */
function outputNamesOf(m: ResourceModel): string {
  return `${m.type.charAt(0).toLowerCase()}${m.type.slice(1)}OutputNames`;
}

function nativeFile(m: ResourceModel): string {
  return (
    TS_HEADER(`provider/src/resources/${m.file}`) +
    `import {\n  ${outputNamesOf(m)},\n  type ${m.type}Args as Dynamic${m.type}Args,\n  type ${m.type}Properties,\n} from "../${m.file}";\n` +
    `import { nativeResource, type NativeConnectionInput } from "./common";\n\n` +
    jsDoc(
      `The inputs of the native ${m.type}: those of the dynamic class, \`connection\` optional.`,
    ) +
    `export type ${m.type}Args = Omit<Dynamic${m.type}Args, "connection"> & NativeConnectionInput;\n\n` +
    jsDoc(`${m.description} Served by the native plugin (\`${PKG}:index:${m.type}\`).`) +
    `export class ${m.type} extends nativeResource<${m.type}Args, ${m.type}Properties>(\n` +
    `  ${JSON.stringify(m.type)},\n  ${outputNamesOf(m)},\n) {}\n`
  );
}

function connectionFile(ctx: SdkContext): string {
  return (
    TS_HEADER("provider/src/host/connection.ts") +
    `import type * as pulumi from "@pulumi/pulumi";\n` +
    typeDeclarations("connection", ctx)
  );
}

function indexFile(models: ResourceModel[], ctx: SdkContext): string {
  const typeNames = (file: string): string[] =>
    [...ctx.homes]
      .filter(([, h]) => h === file)
      .map(([id]) => (ctx.argTypes.has(id) ? `${id}Args` : id));
  const lines = [
    `export type { ${typeNames("connection").join(", ")} } from "./connection";\n`,
    ...models.map((m) => {
      const names = [m.type, `type ${m.type}Args`, `type ${m.type}Properties`];
      names.push(...typeNames(m.file).map((n) => `type ${n}`));
      return `export { ${names.join(", ")} } from "./${m.file}";\n`;
    }),
    `export * as native from "./native";\n`,
  ];
  return TS_HEADER("the resource registry") + lines.join("");
}

function nativeIndexFile(models: ResourceModel[]): string {
  return (
    TS_HEADER("the resource registry") +
    `// The classes of the native package (\`${PKG}:index:<Name>\`, served by pulumi-resource-${PKG}).\n` +
    `export { Provider, type ProviderArgs } from "./provider";\n` +
    models.map((m) => `export { ${m.type}, type ${m.type}Args } from "./${m.file}";\n`).join("")
  );
}

// ---- reference docs ----

const MD_HEADER = (from: string): string =>
  `<!-- Generated by \`npm run generate\` from ${from}; do not edit. -->\n\n`;

function mdType(t: TypeRef, here: string): string {
  switch (t.kind) {
    case "string":
      return t.values ? t.values.map((v) => `\`"${v}"\``).join(" or ") : "string";
    case "array":
      return `list of ${mdType(t.items, here)}`;
    case "ref":
      return t.id === "Connection" || t.id === "ConnectionSudo"
        ? `[${t.id}](${here === "connection" ? "" : "connection.md"}#${t.id.toLowerCase()})`
        : `[${t.id}](#${t.id.toLowerCase()})`;
    case "union":
      return t.of.map((u) => mdType(u, here)).join(" or ");
    default:
      return t.kind;
  }
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

function mdDefault(f: Field): string {
  if (f.required) return "required";
  return f.default !== undefined ? `\`${JSON.stringify(f.default)}\`` : "unset";
}

function fieldTable(fields: Field[], here: string, identity?: readonly string[]): string {
  const head = identity
    ? "| Name | Type | Default | Replaces | Description |\n| --- | --- | --- | --- | --- |\n"
    : "| Name | Type | Default | Description |\n| --- | --- | --- | --- |\n";
  return (
    head +
    fields
      .map((f) => {
        const type = mdType(f.type, here) + (f.nullable ? " or null" : "");
        const replaces = identity ? ` ${identity.includes(f.name) ? "yes" : "no"} |` : "";
        const desc = sentence(f.description) + (f.secret ? " Secret." : "");
        return `| \`${f.name}\` | ${cell(type)} | ${cell(mdDefault(f))} |${replaces} ${cell(desc)} |\n`;
      })
      .join("")
  );
}

function typeSections(ids: string[], all: Map<string, NamedType>, here: string): string {
  return ids
    .map((id) => {
      const t = all.get(id)!;
      return `\n### ${id}\n\n${sentence(t.description)}\n\n${fieldTable(t.fields, here)}`;
    })
    .join("");
}

function resourcePage(m: ResourceModel, all: Map<string, NamedType>): string {
  const connection: Field = {
    name: "connection",
    type: { kind: "ref", id: "Connection" },
    description:
      "How to reach the host. Optional with the native provider, which then uses its own connection; a change of host, port or proxy replaces the resource",
    required: true,
    nullable: false,
    secret: true,
  };
  const ids: string[] = [];
  for (const f of [...m.inputs, ...m.outputs]) refsOf(f.type, ids);
  for (const id of [...ids]) for (const f of all.get(id)?.fields ?? []) refsOf(f.type, ids);
  const outputs: Field[] = [
    ...m.outputs,
    {
      name: "plannedSteps",
      type: { kind: "array", items: { kind: "string" } },
      description: `Native provider only. ${PLANNED_STEPS_DESCRIPTION}`,
      required: false,
      nullable: false,
      secret: false,
    },
  ];
  const outputRows = outputs
    .map(
      (f) =>
        `| \`${f.name}\` | ${cell(mdType(f.type, m.file))} | ${cell(sentence(f.description))} |\n`,
    )
    .join("");
  return (
    MD_HEADER(`provider/src/resources/${m.file}`) +
    `# ${m.type}\n\n${m.description}\n\n` +
    `- Dynamic provider: \`new hypervisor.${m.type}(name, args)\`, type \`pulumi-nodejs:dynamic/${PKG}:${m.type}\`.\n` +
    `- Native plugin: \`new hypervisor.native.${m.type}(name, args)\`, token \`${PKG}:index:${m.type}\`.\n\n` +
    `## Inputs\n\n"Replaces": a change deletes the ${m.noun} and creates it again; other inputs are applied in place.\n\n` +
    fieldTable([connection, ...m.inputs], m.file, [...m.identity]) +
    `\n## Outputs\n\nAll inputs are outputs too, as observed; beyond them:\n\n| Name | Type | Description |\n| --- | --- | --- |\n${outputRows}` +
    (ids.length ? `\n## Types\n${typeSections(ids, all, m.file)}` : "")
  );
}

function connectionPage(conn: Converted, all: Map<string, NamedType>): string {
  const c = all.get("Connection")!;
  return (
    MD_HEADER("provider/src/host/connection.ts") +
    `# Connection\n\n${sentence(c.description)}\n\n` +
    "Every resource takes one as `connection`; the native provider takes one as its own `connection` " +
    "(or its fields one by one as stack config: `pulumi config set hypervisor:host ...`). Secret fields " +
    "stay secret in the state.\n\n" +
    `## Connection\n\n${fieldTable(conn.fields, "connection")}` +
    typeSections(
      [...conn.types.keys()].filter((id) => id !== "Connection"),
      all,
      "connection",
    )
  );
}

// ---- all files ----

/** Returns every generated file by path relative to the repository, formatted as checked in. */
export async function generateFiles(): Promise<Map<string, string>> {
  const models = resourceModels();
  const conn = connectionModel();
  const all = allTypes(models, conn);
  const ctx: SdkContext = {
    all,
    homes: typeHomes(models, conn),
    argTypes: inputTypeIds(models, conn, all),
  };
  const files = new Map<string, string>();
  files.set("schema.json", `${JSON.stringify(generateSchema(models, conn), null, 2)}\n`);
  files.set("sdk/connection.ts", connectionFile(ctx));
  files.set("sdk/index.ts", indexFile(models, ctx));
  files.set("sdk/native/index.ts", nativeIndexFile(models));
  files.set("docs/reference/connection.md", connectionPage(conn, all));
  for (const m of models) {
    files.set(`sdk/${m.file}.ts`, dynamicFile(m, ctx));
    files.set(`sdk/native/${m.file}.ts`, nativeFile(m));
    files.set(`docs/reference/${m.file}.md`, resourcePage(m, all));
  }
  const config = (await prettier.resolveConfig(path.join(ROOT, "package.json"))) ?? {};
  for (const [file, text] of files) {
    if (file.endsWith(".json")) continue;
    files.set(file, await prettier.format(text, { ...config, filepath: path.join(ROOT, file) }));
  }
  return files;
}

/** Returns the generated files on disk (they carry the header) that the generator no longer writes. */
export function leftoverFiles(files: Map<string, string>): string[] {
  const out: string[] = [];
  for (const dir of ["sdk", "sdk/native", "docs/reference"]) {
    const abs = path.join(ROOT, dir);
    if (!fs.existsSync(abs)) continue;
    for (const name of fs.readdirSync(abs)) {
      const rel = `${dir}/${name}`;
      if (files.has(rel) || !fs.statSync(path.join(abs, name)).isFile()) continue;
      if (/Generated by `npm run generate`/.test(fs.readFileSync(path.join(abs, name), "utf8"))) {
        out.push(rel);
      }
    }
  }
  return out;
}

async function main(): Promise<void> {
  const files = await generateFiles();
  for (const [file, text] of files) {
    const abs = path.join(ROOT, file);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    if (fs.existsSync(abs) && fs.readFileSync(abs, "utf8") === text) continue;
    fs.writeFileSync(abs, text);
    process.stdout.write(`wrote ${file}\n`);
  }
  for (const file of leftoverFiles(files)) {
    fs.rmSync(path.join(ROOT, file));
    process.stdout.write(`removed ${file}\n`);
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`generate: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
