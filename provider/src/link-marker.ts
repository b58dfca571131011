import { PlanError } from "./errors";
import type { Step } from "./step";

// The kernel keeps a link's ifalias (IFLA_IFALIAS) for as long as the link exists and drops it with
// the link, so it marks this very link: a link of the same name that an admin makes after ours was
// deleted has none. `ip link add` ignores `alias` (the kernel does not read it on RTM_NEWLINK), so
// it is set by a step of its own right after the create.

/** The ifalias the provider gives every bridge and tap it creates. */
export const LINK_MARKER = "pulumi-hypervisor";

/** Returns whether a link's ifalias (from `ip -j link show`) says the provider created it. */
export function isMarked(ifalias: string | undefined): boolean {
  return ifalias === LINK_MARKER;
}

/** Returns the step that marks the link as the provider's. */
export function markLinkStep(name: string): Step {
  return {
    summary: `mark ${name} as created by pulumi-hypervisor (ifalias)`,
    argv: ["ip", "link", "set", "dev", name, "alias", LINK_MARKER],
  };
}

/**
 * Throws when a create would take over a link the provider did not create (no marker) and the
 * program did not opt in: the create would change an admin's link and a destroy would delete it.
 */
export function refuseUnmarked(
  what: { type: string; noun: string; name: string },
  link: { ifalias?: string | undefined },
  creating: boolean | undefined,
  adopt: boolean,
): void {
  if (!creating || adopt || isMarked(link.ifalias)) return;
  const alias =
    link.ifalias === undefined
      ? "it has no ifalias"
      : `its ifalias is ${JSON.stringify(link.ifalias)}`;
  throw new PlanError(
    `${what.noun} ${JSON.stringify(what.name)} already exists and was not created by pulumi-hypervisor ` +
      `(${alias}, not ${JSON.stringify(LINK_MARKER)}); refusing to take it over, nothing was changed. ` +
      `To manage it, import it (pulumi import hypervisor:index:${what.type} <resource name> ${what.name}) ` +
      `or set adopt: true (the provider then changes it to match, and destroy deletes it)`,
  );
}
