// What of a lab host's credentials a test looks for where they must never show up.
import type { LabHost } from "../../lab";

/** Returns the base64 body of the host's private key (its PEM lines without the armour). */
export function privateKeyBody(h: LabHost): string {
  return h
    .connection()
    .privateKey.split("\n")
    .filter((l) => l && !l.startsWith("-----"))
    .join("");
}
