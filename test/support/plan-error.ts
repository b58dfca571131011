// What a plan's refusal says beyond its message.
import { PlanError } from "../../provider/src/errors";

/** The link a plan refused for its absence (PlanError.missingLink); throws unless fn throws a PlanError. */
export function missingLinkOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof PlanError) return e.missingLink;
    throw e;
  }
  throw new Error("the plan did not refuse");
}
