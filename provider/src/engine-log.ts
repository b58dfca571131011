// Messages for the user through the engine's Log service, whose address the engine passes to a
// plugin as its last argument (the native plugin and the dynamic-provider plugin alike).
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engineproto from "@pulumi/pulumi/proto/engine_pb";
import type { LogSink } from "./log";
import { grpc } from "./native/pulumi-deps";

const SEVERITY = {
  info: engineproto.LogSeverity.INFO,
  warning: engineproto.LogSeverity.WARNING,
};

/**
 * Returns a sink that sends messages to the engine's Log service at `address` (the plugin's last
 * argument), and a function that closes its connection. A failed send is written to stderr only.
 */
export function engineLogSink(address: string): { sink: LogSink; close: () => void } {
  const client = new enginerpc.EngineClient(address, grpc.credentials.createInsecure());
  const sink: LogSink = (severity, message, urn, ephemeral = false) => {
    const req = new engineproto.LogRequest();
    req.setSeverity(SEVERITY[severity]);
    req.setMessage(message);
    req.setUrn(urn);
    req.setEphemeral(ephemeral);
    return new Promise((resolve) => {
      client.log(req, (err) => {
        if (err) {
          process.stderr.write(`pulumi-hypervisor: engine log: ${err.details || err.message}\n`);
        }
        resolve();
      });
    });
  };
  return { sink, close: () => client.close() };
}
