// Stopping an operation: the engine's Cancel and a resource's customTimeouts abort a signal, and
// the host a lifecycle operation uses then fails its commands (closing their SSH sessions).
import type { Host } from "./host/host";

/** What can stop an operation: the engine's Cancel, or the resource's customTimeouts. */
export interface OperationOptions {
  /** Aborted with an Error saying why ("cancelled by the engine", "timed out after ..."). */
  signal?: AbortSignal;
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error(String(r));
}

/** Settles like `p`, or rejects with the abort reason as soon as the signal aborts. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Returns a host whose commands stop (their sessions closed) when the signal aborts. */
export function abortableHost(host: Host, signal: AbortSignal | undefined): Host {
  if (!signal) return host;
  const address = host.sessionClientAddress?.bind(host);
  const port = host.sessionServerPort?.bind(host);
  const fresh = host.runFresh?.bind(host);
  return {
    label: host.label,
    run: (req) =>
      signal.aborted
        ? Promise.reject(abortReason(signal))
        : unlessAborted(host.run({ ...req, signal }), signal),
    ...(address ? { sessionClientAddress: (o) => unlessAborted(address(o), signal) } : {}),
    ...(port ? { sessionServerPort: (o) => unlessAborted(port(o), signal) } : {}),
    ...(fresh ? { runFresh: (req) => unlessAborted(fresh({ ...req, signal }), signal) } : {}),
  };
}
