// The engine's side of the plugin protocol that a plugin calls back: pulumirpc.Engine, whose
// address the engine passes as a plugin's last argument. Only Log is served (what a provider
// uses to show the user a message); it records every message so tests can assert on them.

import * as grpc from "@grpc/grpc-js";
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engineproto from "@pulumi/pulumi/proto/engine_pb";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";

export type Severity = "debug" | "info" | "warning" | "error";

/** One message a plugin sent to the engine's Log service. */
export interface LogMessage {
  severity: Severity;
  message: string;
  urn: string;
  /** A status for the progress display rather than a diagnostic. */
  ephemeral: boolean;
}

const SEVERITY: Record<number, Severity> = {
  [engineproto.LogSeverity.DEBUG]: "debug",
  [engineproto.LogSeverity.INFO]: "info",
  [engineproto.LogSeverity.WARNING]: "warning",
  [engineproto.LogSeverity.ERROR]: "error",
};

function unimplemented(name: string) {
  return (_call: unknown, cb: grpc.sendUnaryData<never>): void =>
    cb({ code: grpc.status.UNIMPLEMENTED, details: `${name} is not served by the test engine` });
}

/** A gRPC server on 127.0.0.1 with the Engine service; `address` goes on the plugin's argv. */
export class FakeEngine {
  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
    /** Every message received, in arrival order. */
    readonly messages: LogMessage[],
  ) {}

  /** Starts the server on a free port of 127.0.0.1. */
  static async start(): Promise<FakeEngine> {
    const server = new grpc.Server();
    const messages: LogMessage[] = [];
    const service: enginerpc.IEngineServer = {
      log: (call, cb) => {
        const r = call.request;
        messages.push({
          severity: SEVERITY[r.getSeverity()] ?? "info",
          message: r.getMessage(),
          urn: r.getUrn(),
          ephemeral: r.getEphemeral(),
        });
        cb(null, new Empty());
      },
      getRootResource: unimplemented("GetRootResource"),
      setRootResource: unimplemented("SetRootResource"),
      startDebugging: unimplemented("StartDebugging"),
      requirePulumiVersion: unimplemented("RequirePulumiVersion"),
    };
    server.addService(enginerpc.EngineService, service);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    return new FakeEngine(server, `127.0.0.1:${port}`, messages);
  }

  /** The messages of one severity, in arrival order. */
  of(severity: Severity): LogMessage[] {
    return this.messages.filter((m) => m.severity === severity);
  }

  /** Stops accepting calls and closes open ones. */
  stop(): void {
    this.server.forceShutdown();
  }
}
