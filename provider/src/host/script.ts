import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { CommandError } from "../errors";
import type { Host, RunResult } from "./host";
import { compactShell } from "./shell-compact";

/**
 * A call of a shell script shipped with the provider: its path below `provider/src` (the same
 * below `dist/provider/src`) and its positional parameters. Data reaches a script only through
 * these parameters or stdin, never spliced into its text.
 */
export interface ScriptCall {
  readonly name: string;
  readonly args: readonly string[];
}

// provider/src, or dist/provider/src once built: the build copies every .sh beside the JS.
const ROOT = resolve(__dirname, "..");

// A line `. <path>.sh` includes another script (a library of functions) in place, relative to the
// including file; shellcheck follows the same line with `-x -P SCRIPTDIR`.
const INCLUDE = /^\. (\S+\.sh)$/;

const bodies = new Map<string, string>();
// each body read by scriptBody, to what goes to a host in its place: its text without comments,
// blank lines and indentation (compactShell), and the name a remote shell keeps that text under
const onWire = new Map<string, CachedScript>();

function inline(file: string, seen: Set<string>): string {
  if (seen.has(file)) return "";
  seen.add(file);
  const text = readFileSync(file, "utf8");
  return text
    .split("\n")
    .map((line) => {
      const m = INCLUDE.exec(line);
      return m ? inline(join(dirname(file), m[1] ?? ""), seen).replace(/\n$/, "") : line;
    })
    .join("\n");
}

/** Returns the text of a script with its includes inlined (read once per process). */
export function scriptBody(name: string): string {
  let body = bodies.get(name);
  if (body === undefined) {
    const file = resolve(ROOT, name);
    if (relative(ROOT, file).startsWith("..") || !name.endsWith(".sh")) {
      throw new Error(`script ${JSON.stringify(name)} is not a .sh file below ${ROOT}`);
    }
    body = inline(file, new Set());
    bodies.set(name, body);
    const compact = compactShell(body);
    const hash = createHash("sha256").update(compact).digest("hex").slice(0, 32);
    onWire.set(body, { hash, body: compact });
  }
  return body;
}

/** Returns a call of the script `file` that sits in `dir` (a module's `__dirname`). */
export function scriptIn(dir: string, file: string, args: readonly string[]): ScriptCall {
  return { name: relative(ROOT, join(dir, file)).split("\\").join("/"), args };
}

/** Returns the argv that runs the call on a host: `sh -c <body> <name>.sh ARGS...`. */
export function scriptArgv(call: ScriptCall): string[] {
  return ["sh", "-c", scriptBody(call.name), basename(call.name), ...call.args];
}

/** Returns the argv shown in previews, logs and errors: `sh <name>.sh ARGS...`, not the body. */
export function scriptDisplayArgv(call: ScriptCall): string[] {
  return ["sh", basename(call.name), ...call.args];
}

/**
 * Runs the script on the host; an unexpected exit code is a CommandError that names the script
 * and its arguments (never its body).
 */
export async function runScript(
  host: Host,
  call: ScriptCall,
  opts: { stdin?: string; okExitCodes?: readonly number[] } = {},
): Promise<RunResult> {
  const r = await host.run({
    argv: scriptArgv(call),
    shown: scriptDisplayArgv(call),
    ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
    reject: false,
  });
  if (!(opts.okExitCodes ?? [0]).includes(r.exitCode)) {
    throw new CommandError(host.label, scriptDisplayArgv(call), r);
  }
  return r;
}

/** A script body a remote shell keeps for the requests after the first that runs it. */
export interface CachedScript {
  /** The file name it is kept under in the shell's private directory: hex of its sha256. */
  readonly hash: string;
  /** The text it keeps: the script without comments, blank lines and indentation. */
  readonly body: string;
}

// Where a remote shell keeps the script bodies it was sent (remote-shell.sh exports it).
const SCRIPT_CACHE_VAR = "PULUMI_HYPERVISOR_SCRIPTS";

// The text that runs a kept body: it sources the file, so $0 and "$@" are the caller's.
const cachedRef = (hash: string): string => `. "$${SCRIPT_CACHE_VAR}/${hash}"`;
const CACHED_REF = new RegExp(`^\\. "\\$${SCRIPT_CACHE_VAR}/([0-9a-f]{32})"$`);
const refHash = (word: string | undefined): string | undefined =>
  word !== undefined ? CACHED_REF.exec(word)?.[1] : undefined;

/**
 * Where a script's arguments hold commands it runs at once and never keeps: `[start, end)` ranges
 * of argument indexes, each a whole argv, and where the script reads a range's length from a word
 * of its own (apply-batch.sh's N), that word's index: it is rewritten when the command's length
 * changes. Those commands' script bodies may be sent by reference too; any other argument goes as
 * it is (a command kept for later, by a timer say, must not refer to a remote shell's cache, which
 * goes with the shell).
 */
export type NestedCommands = (
  args: readonly string[],
) => Array<readonly [start: number, end: number, lengthAt?: number]>;

const nested = new Map<string, NestedCommands>();
const inShell = new Set<string>();
const sourcesWrapped = new Set<string>();

/**
 * Declares that the script `name` may run inside a remote shell's request (a subshell of the
 * loop: no shell process of its own) when it is the request's command. Its contract: it sets every
 * variable it reads, uses no $0, uses $$ only where the loop's pid serves as well, and ends with
 * exec or exit.
 */
export function declareRunsInShell(name: string): void {
  inShell.add(basename(name));
}

/**
 * Returns the command line of a remote shell's request for an argv from argvWithCachedScripts:
 * `exec ARGV` (the program itself, never a builtin or a function of the loop, and no process
 * besides it), or, for a cached script declared to run in the shell, `set -- ARGS; . FILE`.
 */
export function shellRequestLine(
  argv: readonly string[],
  quote: (w: readonly string[]) => string,
): string {
  const ref = argv[0] === "sh" && argv[1] === "-c" ? argv[2] : undefined;
  if (ref !== undefined && CACHED_REF.test(ref) && inShell.has(argv[3] ?? "")) {
    return `set -- ${quote(argv.slice(4))}; ${ref}`;
  }
  return `exec ${quote(argv)}`;
}

/**
 * Declares that the script `name` runs its nested commands itself and takes a kept script declared
 * to run in the shell as `. HASH ARGS...`, which it sources in its own process (run-wrapped.sh, for
 * the one command a wrapper ends with) or in a subshell (apply-batch.sh): no shell starts for it.
 */
export function declareSourcesWrapped(name: string): void {
  sourcesWrapped.add(basename(name));
}

/** Declares where the script `name` (as in ScriptCall.name) takes commands it runs at once. */
export function declareNestedCommands(name: string, f: NestedCommands): void {
  nested.set(basename(name), f);
}

/**
 * Returns the argv with each provider script it runs (`sh -c BODY NAME ARGS`, at the top or in a
 * declared nested command) as it goes to a host: `inline`, its body's compact text in its place
 * (a session of its own); else a reference to that text in a remote shell's cache, and the texts
 * it refers to.
 */
function argvForHost(
  argv: readonly string[],
  inline: boolean,
): { argv: string[]; scripts: CachedScript[] } {
  const scripts = new Map<string, CachedScript>();
  const visit = (words: readonly string[]): string[] => {
    const body = words[0] === "sh" && words[1] === "-c" ? words[2] : undefined;
    const script = body !== undefined ? onWire.get(body) : undefined;
    if (script === undefined) return [...words];
    scripts.set(script.hash, script);
    const name = words[3] ?? "";
    const args = words.slice(4);
    const out = [...args];
    // innermost first would shift indexes: ranges are replaced from the last to the first
    const ranges = [...(nested.get(name)?.(args) ?? [])].sort((a, b) => b[0] - a[0]);
    for (const [start, end, lengthAt] of ranges) {
      const inner = visit(args.slice(start, end));
      const innerHash = inner[0] === "sh" && inner[1] === "-c" ? refHash(inner[2]) : undefined;
      // a wrapper that sources what it wraps runs a shell-safe kept script without a shell
      const sourced =
        sourcesWrapped.has(name) && innerHash !== undefined && inShell.has(inner[3] ?? "");
      const words = sourced ? [".", innerHash, ...inner.slice(4)] : inner;
      out.splice(start, end - start, ...words);
      // ranges go from the last to the first, and a length word precedes its range
      if (lengthAt !== undefined) out[lengthAt] = String(words.length);
    }
    return ["sh", "-c", inline ? script.body : cachedRef(script.hash), name, ...out];
  };
  const out = visit(argv);
  return { argv: out, scripts: [...scripts.values()] };
}

/**
 * Returns the argv with each provider script it runs referring to its compact text in a remote
 * shell's cache instead of carrying it, and the texts it refers to. The text of a request then
 * stays short whatever the scripts.
 */
export function argvWithCachedScripts(argv: readonly string[]): {
  argv: string[];
  scripts: CachedScript[];
} {
  return argvForHost(argv, false);
}

/**
 * Returns the argv with each provider script it runs carrying its compact text, about half its
 * source's bytes: what a command on a session of its own sends. Boot scripts and other files
 * written on a host keep the scripts as they are (scriptArgv).
 */
export function argvWithCompactScripts(argv: readonly string[]): string[] {
  return argvForHost(argv, true).argv;
}
