import { constants as osConstants } from "node:os";
import { quoteArgv } from "./host/quote";

// Every error type the provider throws on purpose. Messages are lowercase, name the host and
// the command, and never carry a secret (connection values are never interpolated).

/** What a remote command left behind: its exit code and its output. */
export interface CommandOutput {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

// A brand rather than instanceof alone, so an error from another copy of this module (a bundled
// dynamic provider next to the installed package) is still recognised, as execa does.
const COMMAND_ERROR = Symbol.for("pulumi-hypervisor.CommandError");

// The first line a failure shows: stderr, else stdout, else "no output", at most 2000 characters.
function saidBy(output: { stdout: string; stderr: string }): string {
  return (output.stderr.trim() || output.stdout.trim() || "no output").slice(0, 2000);
}

/** A remote command that exited with a code that was not expected. */
export class CommandError extends Error {
  readonly host: string;
  /** The command as it was asked for, word by word. */
  readonly argv: readonly string[];
  /** The command quoted for a POSIX shell, as it appears in messages. */
  readonly command: string;
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly [COMMAND_ERROR] = true;

  constructor(host: string, argv: readonly string[], result: CommandOutput) {
    const command = quoteArgv(argv);
    super(`${host}: ${command} exited ${result.exitCode}: ${saidBy(result)}`);
    this.name = "CommandError";
    this.host = host;
    this.argv = argv;
    this.command = command;
    this.exitCode = result.exitCode;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
  }
}

/** Returns whether the value is a CommandError (a CommandSignalError included). */
export function isCommandError(value: unknown): value is CommandError {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [COMMAND_ERROR]?: unknown })[COMMAND_ERROR] === true
  );
}

/** A remote command killed by a signal; exitCode is 128 + the signal number, as a shell reports. */
export class CommandSignalError extends CommandError {
  readonly signal: string;

  constructor(
    host: string,
    argv: readonly string[],
    signal: string,
    output: Omit<CommandOutput, "exitCode">,
  ) {
    const signals = osConstants.signals as Readonly<Record<string, number | undefined>>;
    super(host, argv, { exitCode: 128 + (signals[signal] ?? 0), ...output });
    this.name = "CommandSignalError";
    this.signal = signal;
    this.message = `${host}: ${this.command} killed by ${signal}: ${saidBy(output)}`;
  }
}

/** A remote command that did not finish within its deadline: it was killed, with what it started. */
export class CommandDeadlineError extends CommandError {
  readonly deadlineMs: number;

  constructor(
    host: string,
    argv: readonly string[],
    deadlineMs: number,
    output: Omit<CommandOutput, "exitCode">,
  ) {
    super(host, argv, { exitCode: 137, ...output });
    this.name = "CommandDeadlineError";
    this.deadlineMs = deadlineMs;
    const said = output.stderr.trim() || output.stdout.trim();
    this.message =
      `${host}: ${this.command} did not finish within ${deadlineMs / 1000} s and was killed` +
      (said ? `: ${said.slice(0, 2000)}` : "");
  }
}

/** Why a host could not be used: the key was refused, login failed, dial gave up, or it dropped. */
export type SshConnectionErrorKind = "host-key" | "auth" | "dial" | "lost" | "channel" | "config";

/** A failure to reach or keep a host; the message names the host and never a secret. */
export class SshConnectionError extends Error {
  readonly host: string;
  readonly kind: SshConnectionErrorKind;

  constructor(host: string, kind: SshConnectionErrorKind, message: string) {
    super(message);
    this.name = "SshConnectionError";
    this.host = host;
    this.kind = kind;
  }
}

// Signals inside the SSH layer (host/): each is caught there and turned into one of the above.

/** A dial failure worth another attempt (refused, timed out, reset, tunnel not open). */
export class RetryableDialError extends Error {}

/** exec threw synchronously: nothing was sent on this connection, so it is stale. */
export class StaleConnectionError extends Error {}

/** The proxy's connection is up but it could not open a tunnel to the next hop. */
export class TunnelError extends Error {}

/**
 * A step that failed; `done` steps before it completed. `mayHaveRun`: the failing command was
 * started and its outcome is unknown (the session was lost while it ran), so it may have changed
 * the host.
 */
export class StepError extends Error {
  constructor(
    readonly done: number,
    override readonly cause: unknown,
    readonly mayHaveRun = false,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = "StepError";
  }
}

/** A plan that cannot be carried out safely; the message says why and what to do. */
export class PlanError extends Error {
  /**
   * The network link whose absence is the refusal (a bridge or a tap not there yet), when that is
   * all: a preview whose update creates that link shows the plan without steps, and no warning.
   */
  readonly missingLink: string | undefined;

  constructor(message: string, opts: { missingLink?: string } = {}) {
    super(message);
    this.name = "PlanError";
    this.missingLink = opts.missingLink;
  }
}

/**
 * A create or update that failed. With an id the object exists half-done on the host, and both
 * front-ends hand id and properties to the engine (ErrorResourceInitFailed) so the state records it.
 */
export class InitFailedError extends Error {
  readonly id: string | undefined;
  readonly properties: Record<string, unknown> | undefined;

  constructor(message: string, id?: string, properties?: Record<string, unknown>) {
    super(message);
    this.name = "InitFailedError";
    this.id = id;
    this.properties = properties;
  }
}

/** Returns the message of a thrown value (an Error's message, anything else as text). */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Returns the message of a thrown value with a lowercase first letter, to follow a colon. */
export function reasonOf(err: unknown): string {
  const text = messageOf(err);
  return text.charAt(0).toLowerCase() + text.slice(1);
}
