import { setTimeout as sleep } from "node:timers/promises";
import { CommandError, messageOf, StepError } from "../errors";
import type { Host, RunRequest, RunResult } from "../host/host";
import { logInfo, logWarn } from "../log";
import { stepArgv, stepDisplayArgv, type Step } from "../step";
import { armedSeconds, isConfirm, restoreNowStep } from "./deadman";

/** Applies steps in as few round trips as it can; StepError says how many completed. */
export type ApplySteps = (host: Host, steps: readonly Step[]) => Promise<void>;

// A confirm tries new logins until this long before the timer fires (a quarter of a short timer),
// so it never races it.
const MAX_MARGIN_MS = 5_000;
const ATTEMPT_MS = 20_000;

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000}s`)), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function offset(e: unknown, by: number): StepError {
  return e instanceof StepError ? new StepError(e.done + by, e.cause) : new StepError(by, e);
}

/**
 * Applies a plan holding a dead-man timer (arm, change, confirm): the change's session may die with
 * the old path, so only a confirm over a new login keeps it; without one the host restores itself
 * and this fails saying so. Returns false when the plan arms no timer.
 */
export async function applyGuarded(
  host: Host,
  steps: readonly Step[],
  apply: ApplySteps,
): Promise<boolean> {
  const a = steps.findIndex((s) => armedSeconds(s) !== undefined);
  const c = steps.findIndex(isConfirm);
  const arm = steps[a];
  const confirm = steps[c];
  if (a < 0 || c < a || !arm || !confirm || !("script" in confirm)) return false;
  const seconds = armedSeconds(arm) ?? 0;
  const id = confirm.script.args[1] ?? "";
  await apply(host, steps.slice(0, a + 1)).catch((e: unknown) => {
    throw offset(e, 0);
  });
  const armedAt = Date.now();
  const fireAt = armedAt + seconds * 1000;
  const CONFIRM_MARGIN_MS = Math.min(MAX_MARGIN_MS, seconds * 250);
  const change = steps.slice(a + 1, c);
  try {
    const budget = Math.max(fireAt - CONFIRM_MARGIN_MS - Date.now(), 1000) / 2;
    await within(apply(host, change), budget, `${host.label}: the guarded change`);
  } catch (e) {
    const cause = e instanceof StepError ? e.cause : e;
    if (cause instanceof CommandError) {
      // A command failed while the session was up: undo now rather than keep a half change.
      await apply(host, [restoreNowStep(id)]).catch(() => undefined);
      throw offset(
        new StepError(
          e instanceof StepError ? e.done : 0,
          new Error(
            `${messageOf(cause)}; the host was restored to its configuration from before the change`,
          ),
        ),
        a + 1,
      );
    }
    logWarn(
      `${host.label}: the session that applied the change of ${id} did not answer (${messageOf(cause)}); confirming over a new login`,
    );
  }
  const req: RunRequest = { argv: stepArgv(confirm), reject: false };
  const login = (r: RunRequest): Promise<RunResult> => (host.runFresh ?? host.run).call(host, r);
  const shown = stepDisplayArgv(confirm);
  let last = "";
  const started = Date.now();
  while (Date.now() < fireAt - CONFIRM_MARGIN_MS) {
    const left = fireAt - CONFIRM_MARGIN_MS - Date.now();
    try {
      const r = await within(login(req), Math.min(left, ATTEMPT_MS), "a new SSH login");
      if (r.exitCode === 0) {
        logInfo(
          `${host.label}: a new SSH login over the new path confirmed the change of ${id} after ${((Date.now() - started) / 1000).toFixed(1)}s`,
        );
        return applyRest(host, steps, c, apply);
      }
      throw new StepError(c, rolledBack(id, seconds, new CommandError(host.label, shown, r)));
    } catch (e) {
      if (e instanceof StepError) throw e;
      last = messageOf(e);
      await sleep(Math.min(2000, Math.max(fireAt - CONFIRM_MARGIN_MS - Date.now(), 0)));
    }
  }
  // No new login: the host restores itself when the timer fires; look again after it has.
  await sleep(Math.max(fireAt + CONFIRM_MARGIN_MS - Date.now(), 0));
  let after: RunResult | undefined;
  try {
    after = await within(login(req), ATTEMPT_MS, "a new SSH login");
  } catch (e) {
    throw new StepError(
      c,
      new Error(
        `${host.label}: no new SSH login over the new management path within ${seconds}s (${last}); ` +
          `the dead-man timer ${id} has fired, but the host still does not answer (${messageOf(e)})`,
      ),
    );
  }
  if (after.exitCode === 0) return applyRest(host, steps, c, apply);
  throw new StepError(
    c,
    new Error(
      `${host.label}: no new SSH login over the new management path within ${seconds}s (${last}); ` +
        `the host rolled back to its previous network configuration by itself (dead-man timer ${id})` +
        (after.stderr.trim() ? `; restore log: ${after.stderr.trim()}` : ""),
    ),
  );
}

function rolledBack(id: string, seconds: number, e: CommandError): Error {
  if (e.exitCode === 3) {
    return new Error(
      `the host rolled back to its previous network configuration by itself: the dead-man timer ${id} fired before a new login confirmed the change (${seconds}s)`,
    );
  }
  return e;
}

async function applyRest(
  host: Host,
  steps: readonly Step[],
  c: number,
  apply: ApplySteps,
): Promise<boolean> {
  await apply(host, steps.slice(c + 1)).catch((e: unknown) => {
    throw offset(e, c + 1);
  });
  return true;
}
