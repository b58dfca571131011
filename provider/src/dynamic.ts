import { hostFor } from "./host/pool";
import { Lifecycle, ResourceOperationError, type HostFactory } from "./lifecycle";
import { resourceModules } from "./registry";

type Props = Record<string, unknown>;

/** The shape `pulumi.dynamic.ResourceProvider` expects, for one resource type. */
export interface DynamicHandlers {
  check(olds: Props, news: Props): Promise<{ inputs: Props; failures: { property: string; reason: string }[] }>;
  diff(id: string, olds: Props, news: Props): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }>;
  create(inputs: Props): Promise<{ id: string; outs: Props }>;
  read(id: string, props: Props): Promise<{ id: string; props: Props }>;
  update(id: string, olds: Props, news: Props): Promise<{ outs: Props }>;
  delete(id: string, props: Props): Promise<void>;
}

const cache = new Map<string, DynamicHandlers>();

// The dynamic-provider plugin packs `id` and `properties` of a thrown error into
// ErrorResourceInitFailed, which is how a half-done create gets recorded in the state.
function rethrow(e: unknown): never {
  if (e instanceof ResourceOperationError && e.id !== undefined) {
    throw Object.assign(new Error(e.message), { id: e.id, properties: e.properties ?? {} });
  }
  throw e;
}

/** Returns the dynamic-provider handlers of a resource type (e.g. "Bridge"). */
export function handlersFor(type: string, hostFactory: HostFactory = hostFor): DynamicHandlers {
  const key = type;
  const hit = hostFactory === hostFor ? cache.get(key) : undefined;
  if (hit) return hit;
  const mod = resourceModules[type];
  if (!mod) throw new Error(`unknown resource type ${JSON.stringify(type)}`);
  const lc = new Lifecycle(mod, hostFactory);
  const handlers: DynamicHandlers = {
    check: async (olds, news) => lc.check(olds, news),
    diff: async (id, olds, news) => {
      const d = lc.diff(id, olds, news);
      return { changes: d.changes, replaces: d.replaces, deleteBeforeReplace: d.deleteBeforeReplace };
    },
    create: (inputs) => lc.create(inputs).catch(rethrow),
    read: (id, props) => lc.read(id, props),
    update: (id, olds, news) => lc.update(id, olds, news).catch(rethrow),
    delete: (id, props) => lc.delete(id, props),
  };
  if (hostFactory === hostFor) cache.set(key, handlers);
  return handlers;
}
