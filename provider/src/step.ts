import { scriptArgv, scriptDisplayArgv, type ScriptCall } from "./host/script";

/**
 * One step of a plan: a command, or a shell script shipped with the provider (shown as
 * `sh <name>.sh ARGS`), each with optional stdin; or a whole file written atomically.
 */
export type Step =
  | {
      readonly summary: string;
      readonly argv: readonly string[];
      readonly stdin?: string;
      readonly okExitCodes?: readonly number[];
    }
  | {
      readonly summary: string;
      readonly script: ScriptCall;
      readonly stdin?: string;
      readonly okExitCodes?: readonly number[];
    }
  | {
      readonly summary: string;
      readonly writeFile: {
        readonly path: string;
        readonly content: string;
        readonly mode: number;
      };
    };

/** A step that runs a command or a script (not a file write). */
export type CommandStep = Exclude<Step, { writeFile: unknown }>;

/** Returns the argv a command or script step runs on the host. */
export function stepArgv(step: CommandStep): string[] {
  return "script" in step ? scriptArgv(step.script) : [...step.argv];
}

/** Returns the argv shown for a command or script step: a script by its name, not its body. */
export function stepDisplayArgv(step: CommandStep): string[] {
  return "script" in step ? scriptDisplayArgv(step.script) : [...step.argv];
}
