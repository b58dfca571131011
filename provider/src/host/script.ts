import { readFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { CommandError } from "../errors";
import type { Host, RunResult } from "./host";

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
