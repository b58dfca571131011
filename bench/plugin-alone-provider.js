// The provider of the bench's "plugin alone" runs (bench/plugin-alone.ts): loaded by the
// dynamic-provider plugin in place of pulumi-hypervisor/provider, it touches no host and answers
// each call with what the real provider answered in the run before (read from the file named by
// PULUMI_HYPERVISOR_BENCH_RECORDED), so the plugin's gRPC, protobuf and dynamic-provider work runs
// on the same payloads and its CPU is what the Pulumi plugin costs without the provider's own.
// Plain JavaScript: the plugin runs node without a TypeScript loader.
const { readFileSync } = require("node:fs");

// the engine's wrapping of a secret value (sdk/nodejs/runtime/rpc.ts specialSigKey)
const SIG = "4dabf18193072939515e22adb298388d";

function plain(v) {
  return v !== null && typeof v === "object" && SIG in v ? v.value : v;
}

/** Returns the key of a resource: its type, its host's address and port, its name on the host. */
function keyOf(type, inputs) {
  const c = plain(inputs.connection) ?? {};
  return `${type} ${c.host}:${c.port} ${plain(inputs.name)}`;
}

let recorded;

function recordedFor(type, inputs) {
  if (recorded === undefined) {
    const file = process.env.PULUMI_HYPERVISOR_BENCH_RECORDED;
    if (!file) throw new Error("PULUMI_HYPERVISOR_BENCH_RECORDED is not set");
    recorded = new Map(JSON.parse(readFileSync(file, "utf8")).map((r) => [r.key, r]));
  }
  const r = recorded.get(keyOf(type, inputs));
  if (!r) throw new Error(`nothing recorded for ${keyOf(type, inputs)}`);
  return r;
}

/** Returns the recorded properties with the call's connection (the recording holds none). */
function withConnection(props, inputs) {
  return { ...props, connection: inputs.connection };
}

exports.keyOf = keyOf;

exports.handlersFor = (type) => ({
  check: async (_olds, news) => ({
    inputs: withConnection(recordedFor(type, news).inputs, news),
    failures: [],
  }),
  diff: async () => ({ changes: false }),
  create: async (inputs) => {
    const r = recordedFor(type, inputs);
    return { id: r.id, outs: withConnection(r.outputs, inputs) };
  },
  read: async (id, props) => ({ id, props }),
  update: async (_id, _olds, news) => ({ outs: news }),
  delete: async () => undefined,
});
