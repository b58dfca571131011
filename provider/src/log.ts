// Where the provider's messages go. stderr always gets every line: the engine keeps a plugin's
// stderr for its debug log (`pulumi up -v=9 --logtostderr`). Warnings also go to the engine's Log
// service when the plugin has connected one (setLogSink), because that is what the user sees: the
// native plugin and the dynamic-provider plugin both get the engine's address as last argument.
// Messages are built by callers from labels and summaries only: never from a connection object.
import { AsyncLocalStorage } from "node:async_hooks";

export type LogSeverity = "info" | "warning";

/**
 * Receives one message for the user, with the URN of the resource being worked on ("" if none);
 * `ephemeral`: a status of that resource for the engine's progress display, not a diagnostic.
 */
export type LogSink = (
  severity: LogSeverity,
  message: string,
  urn: string,
  ephemeral?: boolean,
) => Promise<void>;

let sink: LogSink | undefined;
const pending = new Set<Promise<void>>();
const resourceUrn = new AsyncLocalStorage<string>();

/** Sends warnings to `next` from now on (undefined: stderr only); returns the previous sink. */
export function setLogSink(next: LogSink | undefined): LogSink | undefined {
  const prev = sink;
  sink = next;
  return prev;
}

/** Returns what `fn` returns; messages logged while it runs are attached to the resource `urn`. */
export function withResourceUrn<T>(urn: string, fn: () => T): T {
  return resourceUrn.run(urn, fn);
}

/** Writes informational lines for the engine's debug log, all in one write (one system call). */
export function logInfo(...messages: readonly string[]): void {
  if (messages.length === 0) return;
  process.stderr.write(messages.map((m) => `pulumi-hypervisor: ${m}\n`).join(""));
}

/** Writes one warning line for the engine's debug log and shows it to the user through the engine. */
export function logWarn(message: string): void {
  process.stderr.write(`pulumi-hypervisor: warning: ${message}\n`);
  send("warning", message, false);
}

/**
 * Writes one line for the engine's debug log and shows it as the resource's status while the
 * engine works on it (an ephemeral info message: the progress display, not the diagnostics).
 */
export function logStatus(message: string): void {
  process.stderr.write(`pulumi-hypervisor: ${message}\n`);
  send("info", message, true);
}

function send(severity: LogSeverity, message: string, ephemeral: boolean): void {
  if (!sink) return;
  const sent = sink(severity, message, resourceUrn.getStore() ?? "", ephemeral).finally(() =>
    pending.delete(sent),
  );
  pending.add(sent);
}

/** Resolves when every message sent so far reached the sink's destination (or failed to). */
export async function flushLog(): Promise<void> {
  await Promise.all([...pending]);
}
