import { engineLogSink } from "./engine-log";
import { InitFailedError } from "./errors";
import { hostFor } from "./host/pool";
import { Lifecycle, type HostFactory } from "./lifecycle";
import { flushLog, setLogSink } from "./log";
import { resourceModules } from "./registry";

type Props = Record<string, unknown>;

/** The shape `pulumi.dynamic.ResourceProvider` expects, for one resource type. */
export interface DynamicHandlers {
  check(
    olds: Props,
    news: Props,
  ): Promise<{ inputs: Props; failures: { property: string; reason: string }[] }>;
  diff(
    id: string,
    olds: Props,
    news: Props,
  ): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }>;
  create(inputs: Props): Promise<{ id: string; outs: Props }>;
  read(id: string, props: Props): Promise<{ id: string; props: Props; inputs?: Props }>;
  update(id: string, olds: Props, news: Props): Promise<{ outs: Props }>;
  delete(id: string, props: Props): Promise<void>;
}

const cache = new Map<string, DynamicHandlers>();

/**
 * Returns the value without undefined members. The plugin encodes results as protobuf Structs,
 * which reject undefined: in `outs` the call fails with "Unexpected struct type", and in an
 * error's `properties` the plugin never answers at all.
 */
export function dropUndefined<T>(value: T): T {
  if (Array.isArray(value)) return value.filter((v) => v !== undefined).map(dropUndefined) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, dropUndefined(v)]),
    ) as T;
  }
  return value;
}

// The dynamic-provider plugin packs `id` and `properties` of a thrown error into
// ErrorResourceInitFailed, which is how a half-done create gets recorded in the state.
function rethrow(e: unknown): never {
  if (e instanceof InitFailedError && e.id !== undefined) {
    throw new InitFailedError(e.message, e.id, dropUndefined(e.properties ?? {}));
  }
  throw e;
}

let engineLogChecked = false;

// The engine starts the dynamic-provider plugin as `node .../cmd/dynamic-provider <engine>`, and
// shows its stderr only at debug level: warnings go to the engine's Log service instead.
function useEngineLog(): void {
  if (engineLogChecked) return;
  engineLogChecked = true;
  const [, script, address] = process.argv;
  if (script === undefined || address === undefined) return;
  if (!/[\\/]cmd[\\/]dynamic-provider([\\/]index\.js)?$/.test(script)) return;
  setLogSink(engineLogSink(address).sink);
}

// Answers after the operation's warnings reached the engine: it may end right after the answer.
function flushed<T>(p: Promise<T>): Promise<T> {
  return p.finally(flushLog);
}

/** Returns the dynamic-provider handlers of a resource type (e.g. "Bridge"). */
export function handlersFor(type: string, hostFactory: HostFactory = hostFor): DynamicHandlers {
  const key = type;
  const hit = hostFactory === hostFor ? cache.get(key) : undefined;
  if (hit) return hit;
  const mod = resourceModules[type];
  if (!mod) throw new Error(`unknown resource type ${JSON.stringify(type)}`);
  if (hostFactory === hostFor) useEngineLog();
  // Real hosts take the host-side lock; a test's fake host answers only what it is asked.
  const lc = new Lifecycle(mod, hostFactory, { hostLock: hostFactory === hostFor });
  const handlers: DynamicHandlers = {
    check: async (olds, news) => lc.check(olds, news),
    diff: async (id, olds, news) => {
      const d = lc.diff(id, olds, news);
      return {
        changes: d.changes,
        replaces: d.replaces,
        deleteBeforeReplace: d.deleteBeforeReplace,
      };
    },
    create: (inputs) => flushed(lc.create(inputs).then(dropUndefined, rethrow)),
    read: (id, props) => flushed(lc.read(id, props).then(dropUndefined)),
    update: (id, olds, news) => flushed(lc.update(id, olds, news).then(dropUndefined, rethrow)),
    delete: (id, props) => flushed(lc.delete(id, props)),
  };
  if (hostFactory === hostFor) cache.set(key, handlers);
  return handlers;
}
