// The "plugin alone" runs: the same engine calls as a pooled run (the same specs, schedule and
// phases) against the dynamic-provider plugin with a provider that does nothing
// (bench/plugin-alone-provider.js) and answers with what the real provider answered in that run.
// The plugin's CPU is then the Pulumi plugin's own per-call work (gRPC, protobuf, the
// dynamic-provider server) on the same payloads: the part of the controller CPU per operation
// that no change to the provider can cut.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { Lab } from "../lab";
import { DynamicProviderPlugin, type ResourceSpec, type ResourceState } from "../lab/engine/engine";
import { FakeEngine } from "../lab/engine/fake-engine";
import { REPO_ROOT } from "../lab/harness";
import type { CpuGroup } from "./cgroup";
import type { RunCpu } from "./driver";
import { deploymentsOf, PHASES, specConnection } from "./driver";
import { hostSpecs } from "./fleet-specs";
import { residentOf } from "./memory";
import type { Schedule } from "./options";
import type { Relay } from "./relay";

const ALONE_PROVIDER = path.join(__dirname, "plugin-alone-provider.js");

const { keyOf } = require(ALONE_PROVIDER) as {
  keyOf(this: void, type: string, inputs: Record<string, unknown>): string;
};

/** What the plugin answered for one resource, without its connection (no secret on disk). */
export interface Recorded {
  key: string;
  id: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

export interface PluginAloneResult {
  schedule: Schedule;
  delayMs: number;
  /** Which of the bench's interleaved runs (--repeat) this is, from 1. */
  trial?: number;
  /** Resource operations over the three phases. */
  ops: number;
  /** CPU time of the plugin process over the three phases (cgroup v2), microseconds. */
  controllerCpuUs: number;
  /** The plugin's peak resident set over its life (VmHWM), kB. */
  peakKb?: number;
}

function withoutConnection(props: Record<string, unknown>): Record<string, unknown> {
  const { connection: _c, __provider: _p, ...rest } = props;
  return rest;
}

/** Returns the recording of a run's states after its create: each resource's inputs and outputs. */
export function recordingOf(states: ResourceState[]): Recorded[] {
  return states.map((s) => ({
    // the type token ends in the SDK class's name (pulumi-nodejs:dynamic/hypervisor:TapDevice)
    key: keyOf(s.type.slice(s.type.lastIndexOf(":") + 1), s.inputs),
    id: s.id,
    inputs: withoutConnection(s.inputs),
    outputs: withoutConnection(s.outputs),
  }));
}

/** Returns the `__provider` text with the plugin-alone provider in place of the real one. */
export function aloneProviderText(text: string): string {
  const real = 'require("pulumi-hypervisor/provider")';
  if (!text.includes(real)) throw new Error(`__provider does not load ${real}`);
  return text.split(real).join(`require(${JSON.stringify(ALONE_PROVIDER)})`);
}

/**
 * Runs the three phases of the fleet in `schedule` against the plugin with the provider that does
 * nothing, answering from `recorded`; returns the plugin's CPU.
 */
export async function runPluginAlone(
  lab: Lab,
  resources: number,
  schedule: Schedule,
  delayMs: number,
  relays: Map<string, Relay>,
  recorded: Recorded[],
  cpu: RunCpu,
): Promise<PluginAloneResult> {
  const dir = await mkdtemp(path.join(tmpdir(), "hv-bench-alone-"));
  let fake: FakeEngine | undefined;
  let plugin: DynamicProviderPlugin | undefined;
  let group: CpuGroup | undefined;
  try {
    const file = path.join(dir, "recorded.json");
    await writeFile(file, JSON.stringify(recorded), { mode: 0o600 });
    fake = await FakeEngine.start();
    plugin = await DynamicProviderPlugin.start({
      cwd: REPO_ROOT,
      env: { ...process.env, PULUMI_HYPERVISOR_BENCH_RECORDED: file },
      engineAddress: fake.address,
    });
    group = await cpu.acct.group(`plugin-alone-${process.hrtime.bigint()}`, [plugin.pid]);
    await plugin.configure({});
    const hosts: { specs: ResourceSpec[] }[] = [];
    for (const h of lab.hosts) {
      const specs = (
        await hostSpecs(h.name, h.guestNet(0), resources, specConnection(h, relays))
      ).map((s) => ({
        ...s,
        inputs: { ...s.inputs, __provider: aloneProviderText(String(s.inputs["__provider"])) },
      }));
      hosts.push({ specs });
    }
    const alone = plugin;
    const deployments = deploymentsOf(hosts, schedule, () => alone);
    const before = await group.usageUsec();
    let ops = 0;
    for (const p of PHASES) {
      await Promise.all(
        deployments.map(async ({ deployment, hosts: of }) => {
          const steps = await deployment.run(p, schedule);
          const want = of.reduce((n, h) => n + h.specs.length, 0);
          if (steps.length !== want) {
            throw new Error(`plugin alone ${p}: ${steps.length} steps for ${want}`);
          }
          ops += steps.length;
        }),
      );
    }
    const controllerCpuUs = (await group.usageUsec()) - before;
    const peakKb = (await residentOf(plugin.pid))?.peakKb;
    return { schedule, delayMs, ops, controllerCpuUs, ...(peakKb !== undefined ? { peakKb } : {}) };
  } finally {
    await plugin?.stop();
    fake?.stop();
    await group?.remove();
    await rm(dir, { recursive: true, force: true });
  }
}
