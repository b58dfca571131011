// The dynamic-provider plugin forwards stderr to the engine, which shows it as diagnostics.
// Messages are built by callers from labels and summaries only: never from a connection object.

/** Writes one informational line for the engine's log. */
export function logInfo(message: string): void {
  process.stderr.write(`pulumi-hypervisor: ${message}\n`);
}

/** Writes one warning line for the engine's log. */
export function logWarn(message: string): void {
  process.stderr.write(`pulumi-hypervisor: warning: ${message}\n`);
}
