import { quoteArgv } from "./host/quote";
import { stepArgv, type Step } from "./step";

/**
 * Returns one POSIX shell line per step, run in order outside the provider (a boot script, a
 * dead-man restore). A step that fails calls `onFailure` (a shell function the caller's script
 * defines) with the step's summary and exit code; files are written through a temp file and a rename.
 */
export function stepScriptLines(steps: readonly Step[], onFailure: string): string[] {
  return steps.map((step) => {
    const what = quoteArgv([step.summary]);
    if ("writeFile" in step) {
      const { path, content, mode } = step.writeFile;
      const tmp = quoteArgv([`${path}.pulumi-tmp`]);
      return `{ printf '%s' ${quoteArgv([content])} >${tmp} && chmod ${mode.toString(8)} ${tmp} && mv -f ${tmp} ${quoteArgv([path])}; } || ${onFailure} ${what} $?`;
    }
    const ok = (step.okExitCodes ?? [0]).join("|");
    const stdin = step.stdin !== undefined ? `printf '%s' ${quoteArgv([step.stdin])} | ` : "";
    const redirect = step.stdin !== undefined ? "" : " </dev/null";
    return `${stdin}${quoteArgv(stepArgv(step))}${redirect}; rc=$?; case $rc in ${ok}) ;; *) ${onFailure} ${what} $rc ;; esac`;
  });
}
