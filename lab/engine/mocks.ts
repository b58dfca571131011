// Runs a Pulumi program under `pulumi.runtime.setMocks` and captures every registered resource.
//
// Isolation between runs: each run executes inside `withLocalStorage` from
// @pulumi/pulumi/runtime/state (what the Automation API's inline-program server does for every
// run). It gives the run a fresh runtime store (options, monitor, config, stack resource,
// leak candidates), and `setMocks` installs a new MockMonitor in that store, so runs never see
// each other's resources or config, and the process-wide store is left untouched. Without it,
// `setMocks` alone also works sequentially (it calls settings.resetOptions, which resets the
// monitor, options and stack resource), but config set by one run would leak into the next.
// What is not reset: Node's require cache. A program that is a module (`() => require(...)`) only
// runs the first time it is required; pass a function that builds the resources instead, or
// delete the module from `require.cache` first.
//
// The program runs inside `runInPulumiStack` like a real program, so resources get the root stack
// as parent; the root `pulumi:pulumi:Stack` itself is not reported. After the program returns,
// `pulumi.runtime.disconnect()` waits for all outstanding registrations (settings.waitForRPCs).
//
// Inputs arrive at the mock already resolved (Outputs awaited, then serialized and deserialized
// as the engine would receive them): the dynamic resource's `__provider` (an Output produced by
// the closure serializer) is therefore the plain string of JS. Secret values arrive wrapped
// (`{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value}`), with the
// secretness pushed up to the top-level property: they are unwrapped here and their top-level
// keys are listed in `secretKeys`.
//
// A resource given the `provider` option (a native `Provider`) arrives with the provider's
// reference, `<provider urn>::<provider id>`, kept in `provider`.

import * as pulumi from "@pulumi/pulumi";

export interface CapturedResource {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  secretKeys: string[];
  /** The provider reference (`<provider urn>::<id>`) when the resource names an explicit provider. */
  provider?: string;
  /**
   * Names of the captured resources this one depends on: the `dependencies` of its registration,
   * which the SDK fills with every resource whose outputs its inputs took and those of `dependsOn`.
   * A program registers this one once they have completed; the engine deletes this one first.
   */
  dependsOn: string[];
}

export interface RunProgramOptions {
  project?: string;
  stack?: string;
  /** Stack config, keys namespaced as in Pulumi.<stack>.yaml (`project:key`), values as strings. */
  config?: Record<string, string>;
  /** Config keys (from `config`) that are secret. */
  secretConfigKeys?: string[];
}

interface StateModule {
  withLocalStorage<T>(callback: () => T): T;
}

interface RegisterRequest {
  getName(): string;
  getDependenciesList(): string[];
}

interface MockMonitorLike {
  registerResource(req: RegisterRequest, callback: unknown): unknown;
}

/** A resource's name: the last part of its URN (`urn:pulumi:stack::project::type::name`). */
function nameOfUrn(urn: string): string {
  return urn.slice(urn.lastIndexOf("::") + 2);
}

const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

function isSecret(v: unknown): v is { value: unknown } {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG
  );
}

/** Removes secret wrappers at any depth (the runtime only leaves them at the top level). */
function unwrapSecrets(v: unknown): unknown {
  if (isSecret(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = unwrapSecrets(x);
    return out;
  }
  return v;
}

export async function runProgramWithMocks(
  program: () => unknown /* or Promise<unknown> */,
  opts: RunProgramOptions = {},
): Promise<CapturedResource[]> {
  const state = require("@pulumi/pulumi/runtime/state") as StateModule;
  const captured: CapturedResource[] = [];
  const dependencies = new Map<string, string[]>();
  await state.withLocalStorage(async () => {
    await pulumi.runtime.setMocks(
      {
        newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
          if (args.type !== "pulumi:pulumi:Stack") {
            const inputs: Record<string, unknown> = {};
            const secretKeys: string[] = [];
            for (const [k, v] of Object.entries(args.inputs as Record<string, unknown>)) {
              if (isSecret(v)) secretKeys.push(k);
              inputs[k] = unwrapSecrets(v);
            }
            captured.push({
              type: args.type,
              name: args.name,
              inputs,
              secretKeys,
              ...(args.provider ? { provider: args.provider } : {}),
              dependsOn: [],
            });
          }
          return { id: `${args.name}-id`, state: args.inputs as Record<string, unknown> };
        },
        call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
          return args.inputs;
        },
      },
      opts.project ?? "test",
      opts.stack ?? "test",
      false,
    );
    // The mock hands `newResource` no dependencies: they are taken from the request itself.
    const settings = require("@pulumi/pulumi/runtime/settings") as {
      getMonitor(): MockMonitorLike;
    };
    const monitor = settings.getMonitor();
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, callback) => {
      dependencies.set(req.getName(), req.getDependenciesList().map(nameOfUrn));
      return register(req, callback);
    };
    pulumi.runtime.setAllConfig(opts.config ?? {}, opts.secretConfigKeys ?? []);
    // The program's own error is caught inside the stack and rethrown afterwards: a rejected
    // stack initialisation would otherwise also surface as unhandled rejections of its outputs.
    let failure: { error: unknown } | undefined;
    try {
      await pulumi.runtime.runInPulumiStack(async () => {
        try {
          const result = await program();
          return typeof result === "object" && result !== null ? result : undefined;
        } catch (error) {
          failure = { error };
          return undefined;
        }
      });
    } finally {
      await pulumi.runtime.disconnect();
    }
    if (failure) throw failure.error;
  });
  const names = new Set(captured.map((r) => r.name));
  for (const r of captured) {
    r.dependsOn = [...new Set(dependencies.get(r.name) ?? [])].filter((n) => names.has(n));
  }
  return captured;
}
