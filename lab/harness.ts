// Drives the real provider the way the engine does: the dynamic-provider plugin that
// @pulumi/pulumi ships, loading this package's built implementation (npm run build first).
import * as path from "node:path";
import { dynamicProvider } from "../sdk/provider";
import { DynamicProviderPlugin, Engine, type ResourceSpec } from "./engine/engine";
import { startLab, type Lab, type StartLabOptions } from "./lab";

export const REPO_ROOT = path.resolve(__dirname, "..");

const serialized = new Map<string, Promise<string>>();

/** Returns the `__provider` text the SDK class of a resource type serializes into the state. */
export function providerText(type: string): Promise<string> {
  let hit = serialized.get(type);
  if (!hit) {
    const sc = require("@pulumi/pulumi/runtime/closure/serializeClosure") as {
      serializeFunction(f: () => unknown, o: { allowSecrets: boolean }): Promise<{ text: string }>;
    };
    const provider = dynamicProvider(type);
    hit = sc.serializeFunction(() => provider, { allowSecrets: true }).then((r) => r.text);
    serialized.set(type, hit);
  }
  return hit;
}

/** Returns a resource spec as the SDK would register it (type token and `__provider` filled in). */
export async function spec(
  type: string,
  name: string,
  inputs: Record<string, unknown>,
  dependsOn?: string[],
): Promise<ResourceSpec> {
  return {
    type: `pulumi-nodejs:dynamic/hypervisor:${type}`,
    name,
    inputs: { ...inputs, __provider: await providerText(type) },
    ...(dependsOn ? { dependsOn } : {}),
  };
}

/** Starts the plugin from the repo root (where node_modules/pulumi-hypervisor links to the build). */
export async function startEngine(): Promise<{ plugin: DynamicProviderPlugin; engine: Engine }> {
  const plugin = await DynamicProviderPlugin.start({ cwd: REPO_ROOT });
  await plugin.configure({});
  return { plugin, engine: new Engine(plugin) };
}

/** A lab with the dynamic-provider plugin running and an engine driving it. */
export interface LabWithEngine {
  lab: Lab;
  plugin: DynamicProviderPlugin;
  engine: Engine;
}

/** Starts a lab, then the plugin; stops the lab again when the plugin does not start. */
export async function startLabWithEngine(opts: StartLabOptions): Promise<LabWithEngine> {
  const lab = await startLab(opts);
  try {
    return { lab, ...(await startEngine()) };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

/** Stops the plugin, then the lab (even when the plugin's stop failed); either may be missing. */
export async function stopLabWithEngine(s: {
  lab?: Lab;
  plugin?: DynamicProviderPlugin;
}): Promise<void> {
  try {
    await s.plugin?.stop();
  } finally {
    await s.lab?.stop();
  }
}
