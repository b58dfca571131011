// The native provider plugin: a gRPC ResourceProvider server on the stubs @pulumi/pulumi ships.
// The engine starts `pulumi-resource-hypervisor <engine-address>` and reads the port from stdout.
import * as fs from "node:fs";
import * as path from "node:path";
import type * as Grpc from "@grpc/grpc-js";
import type { Empty as EmptyMessage } from "google-protobuf/google/protobuf/empty_pb";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import * as plugproto from "@pulumi/pulumi/proto/plugin_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import { engineLogSink } from "../engine-log";
import { InitFailedError } from "../errors";
import { closeAllHosts } from "../host/pool";
import { flushLog, setLogSink, withResourceUrn } from "../log";
import { NativeProvider, type NativeDiff, type PropertyDiffKind } from "./handlers";
import { Any, Empty, grpc } from "./pulumi-deps";
import { fromStruct, toStruct, type Props } from "./wire";

/** The repository (or installed package) root: where package.json and schema.json are. */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj)) {
      const name = (JSON.parse(fs.readFileSync(pj, "utf8")) as { name?: string }).name;
      if (name === "pulumi-hypervisor") return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find the pulumi-hypervisor package root");
    dir = up;
  }
}

let schemaCache: string | undefined;
/** Returns schema.json's text with the package's version (`pulumi package add` and gen-sdk need one). */
export function schemaJson(): string {
  if (schemaCache === undefined) {
    const text = fs.readFileSync(path.join(packageRoot(), "schema.json"), "utf8");
    const schema = JSON.parse(text) as { version?: string };
    schemaCache =
      schema.version === packageVersion()
        ? text
        : JSON.stringify({ ...schema, version: packageVersion() }, null, 2);
  }
  return schemaCache;
}

function packageVersion(): string {
  const pj = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as {
    version: string;
  };
  return pj.version;
}

type Callback<T> = Grpc.sendUnaryData<T>;

// Messages are built from labels, summaries and zod reasons only, never from property values, so
// they carry no secret.
function toServiceError(e: unknown): Partial<Grpc.ServiceError> {
  const message = e instanceof Error ? e.message : String(e);
  const metadata = new grpc.Metadata();
  if (e instanceof InitFailedError && e.id !== undefined) {
    // The object exists, half-done: the engine records this id and these properties.
    const detail = new provproto.ErrorResourceInitFailed();
    detail.setId(e.id);
    detail.setProperties(toStruct(e.properties ?? {}));
    detail.setReasonsList([message]);
    const any = new Any();
    any.pack(detail.serializeBinary(), "pulumirpc.ErrorResourceInitFailed");
    const status = new statusproto.Status();
    status.setCode(grpc.status.UNKNOWN);
    status.setMessage(message);
    status.addDetails(any);
    metadata.add("grpc-status-details-bin", Buffer.from(status.serializeBinary()));
  }
  return { code: grpc.status.UNKNOWN, details: message, message, metadata };
}

function urnOf(req: unknown): string {
  const r = req as { getUrn?: () => string };
  return typeof r.getUrn === "function" ? r.getUrn() : "";
}

function unary<Req, Res>(fn: (req: Req) => Promise<Res> | Res) {
  return (call: Grpc.ServerUnaryCall<Req, Res>, cb: Callback<Res>): void => {
    Promise.resolve()
      .then(() => withResourceUrn(urnOf(call.request), () => fn(call.request)))
      // The user sees an operation's warnings before its result: the engine may end right after.
      .finally(flushLog)
      .then(
        (res) => cb(null, res),
        (e: unknown) => cb(toServiceError(e) as Grpc.ServiceError, null),
      );
  };
}

function unimplemented(name: string) {
  return (_call: unknown, cb: Callback<never>): void =>
    cb(
      { code: grpc.status.UNIMPLEMENTED, details: `${name} is not implemented by hypervisor` },
      null,
    );
}

const KIND: Record<PropertyDiffKind, provproto.PropertyDiff.Kind> = {
  ADD: provproto.PropertyDiff.Kind.ADD,
  ADD_REPLACE: provproto.PropertyDiff.Kind.ADD_REPLACE,
  DELETE: provproto.PropertyDiff.Kind.DELETE,
  DELETE_REPLACE: provproto.PropertyDiff.Kind.DELETE_REPLACE,
  UPDATE: provproto.PropertyDiff.Kind.UPDATE,
  UPDATE_REPLACE: provproto.PropertyDiff.Kind.UPDATE_REPLACE,
};

function diffResponse(d: NativeDiff): provproto.DiffResponse {
  const res = new provproto.DiffResponse();
  res.setChanges(
    d.changes
      ? provproto.DiffResponse.DiffChanges.DIFF_SOME
      : provproto.DiffResponse.DiffChanges.DIFF_NONE,
  );
  res.setReplacesList(d.replaces);
  res.setDeletebeforereplace(d.deleteBeforeReplace);
  res.setDiffsList(Object.keys(d.detailedDiff));
  res.setHasdetaileddiff(true);
  const map = res.getDetaileddiffMap();
  for (const [k, kind] of Object.entries(d.detailedDiff)) {
    const pd = new provproto.PropertyDiff();
    pd.setKind(KIND[kind]);
    pd.setInputdiff(true);
    map.set(k, pd);
  }
  return res;
}

/** Configuration from a ConfigureRequest: `args` when sent, else the legacy `variables` map. */
function configOf(req: provproto.ConfigureRequest): Props {
  if (req.hasArgs()) return fromStruct(req.getArgs());
  const out: Props = {};
  req.getVariablesMap().forEach((v: string, k: string) => {
    // "hypervisor:config:host" or "hypervisor:host"
    out[k.slice(k.lastIndexOf(":") + 1)] = v;
  });
  return out;
}

/** Returns the gRPC service implementation around one provider instance. */
export function providerService(provider: NativeProvider): provrpc.IResourceProviderServer {
  return {
    handshake: unary((_req: provproto.ProviderHandshakeRequest) => {
      const res = new provproto.ProviderHandshakeResponse();
      res.setAcceptSecrets(true);
      res.setAcceptResources(false);
      res.setAcceptOutputs(false);
      return res;
    }),
    parameterize: unimplemented("Parameterize"),
    getSchema: unary((_req: provproto.GetSchemaRequest) => {
      const res = new provproto.GetSchemaResponse();
      res.setSchema(schemaJson());
      return res;
    }),
    checkConfig: unary((req: provproto.CheckRequest) => {
      const r = provider.checkConfig(fromStruct(req.getNews()));
      return checkResponse(r);
    }),
    diffConfig: unary((req: provproto.DiffRequest) =>
      diffResponse(provider.diffConfig(fromStruct(req.getOlds()), fromStruct(req.getNews()))),
    ),
    configure: unary((req: provproto.ConfigureRequest) => {
      provider.configure(configOf(req));
      const res = new provproto.ConfigureResponse();
      res.setAcceptsecrets(true);
      res.setSupportspreview(true);
      res.setAcceptresources(false);
      res.setAcceptoutputs(false);
      return res;
    }),
    invoke: unimplemented("Invoke"),
    call: unimplemented("Call"),
    check: unary((req: provproto.CheckRequest) =>
      checkResponse(provider.check(typeOf(req), fromStruct(req.getNews()))),
    ),
    diff: unary((req: provproto.DiffRequest) =>
      diffResponse(
        provider.diff(
          typeOf(req),
          fromStruct(req.getOlds()),
          fromStruct(req.getNews()),
          req.hasOldInputs() ? fromStruct(req.getOldInputs()) : undefined,
        ),
      ),
    ),
    create: unary(async (req: provproto.CreateRequest) => {
      const r = await provider.create(
        typeOf(req),
        fromStruct(req.getProperties()),
        req.getPreview(),
        req.getTimeout(),
      );
      const res = new provproto.CreateResponse();
      res.setId(r.id);
      res.setProperties(toStruct(r.properties));
      return res;
    }),
    read: unary(async (req: provproto.ReadRequest) => {
      const r = await provider.read(
        typeOf(req),
        req.getId(),
        fromStruct(req.getProperties()),
        req.hasInputs() ? fromStruct(req.getInputs()) : undefined,
      );
      const res = new provproto.ReadResponse();
      res.setId(r.id);
      if (r.id !== "") {
        res.setProperties(toStruct(r.properties));
        if (r.inputs !== undefined) res.setInputs(toStruct(r.inputs));
      }
      return res;
    }),
    list: (call: Grpc.ServerWritableStream<provproto.ListRequest, provproto.ListResponse>) =>
      call.destroy({
        code: grpc.status.UNIMPLEMENTED,
        details: "List is not implemented by hypervisor",
      } as Grpc.ServiceError),
    update: unary(async (req: provproto.UpdateRequest) => {
      const props = await provider.update(
        typeOf(req),
        req.getId(),
        fromStruct(req.getOlds()),
        fromStruct(req.getNews()),
        req.getPreview(),
        req.getTimeout(),
      );
      const res = new provproto.UpdateResponse();
      res.setProperties(toStruct(props));
      return res;
    }),
    delete: unary(async (req: provproto.DeleteRequest) => {
      await provider.delete(
        typeOf(req),
        req.getId(),
        fromStruct(req.getProperties()),
        req.getTimeout(),
      );
      return new Empty();
    }),
    construct: unimplemented("Construct"),
    cancel: unary((_req: EmptyMessage) => {
      provider.cancel();
      return new Empty();
    }),
    getPluginInfo: unary((_req: EmptyMessage) => {
      const info = new plugproto.PluginInfo();
      info.setVersion(packageVersion());
      return info;
    }),
    // Attach is how the engine adopts a plugin started by hand (PULUMI_DEBUG_PROVIDERS): nothing to do.
    attach: unary((_req: plugproto.PluginAttach) => new Empty()),
    getMapping: unary((_req: provproto.GetMappingRequest) => {
      const res = new provproto.GetMappingResponse();
      res.setProvider("");
      return res;
    }),
    getMappings: unary((_req: provproto.GetMappingsRequest) => new provproto.GetMappingsResponse()),
  };
}

function checkResponse(r: {
  inputs: Props;
  failures: { property: string; reason: string }[];
}): provproto.CheckResponse {
  const res = new provproto.CheckResponse();
  res.setInputs(toStruct(r.inputs));
  res.setFailuresList(
    r.failures.map((f) => {
      const cf = new provproto.CheckFailure();
      cf.setProperty(f.property);
      cf.setReason(f.reason);
      return cf;
    }),
  );
  return res;
}

// Requests carry `type` since @pulumi/pulumi 3.1xx stubs; older stubs have only the URN.
function typeOf(req: { getUrn(): string; getType?: () => string }): string {
  return (
    (typeof req.getType === "function" ? req.getType() : "") || (req.getUrn().split("::")[2] ?? "")
  );
}

/** Starts the server on 127.0.0.1 and prints only its port, as the engine expects. */
export async function main(args: readonly string[]): Promise<void> {
  if (args.length === 0) {
    process.stderr.write("pulumi-resource-hypervisor: fatal: missing <engine> address\n");
    process.exit(1);
  }
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 400 * 1024 * 1024,
    "grpc.max_send_message_length": 400 * 1024 * 1024,
  });
  const engineLog = engineLogSink(args[args.length - 1]!);
  setLogSink(engineLog.sink);
  server.addService(provrpc.ResourceProviderService, providerService(new NativeProvider()));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  process.stdout.write(`${port}\n`);
  const stop = (): void => {
    server.forceShutdown();
    engineLog.close();
    void closeAllHosts().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
