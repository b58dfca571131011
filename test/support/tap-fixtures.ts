// The TapDevice probe captures (test/fixtures/tap-probe-*.txt) as the unit tests use them: the
// probe lists only the links its inputs name, but the tests plan other taps, bridges and uplinks
// against the same host, so the links section gets every link of the capture's namespace
// (tap-links.json, captured with them), as a probe naming each would have listed it.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Returns a file of test/fixtures. */
export const fixture = (f: string): string =>
  readFileSync(join(__dirname, "..", "fixtures", f), "utf8");

const LINKS = "--pulumi-hypervisor-- links\n";

/** Returns the capture `tap-probe-NAME.txt` with every link of its host in the links section. */
export function tapProbeCapture(name: "vm0" | "vm0-look" | "vm1" | "vm9"): string {
  const text = fixture(`tap-probe-${name}.txt`);
  const start = text.indexOf(LINKS);
  if (start < 0) throw new Error(`tap-probe-${name}.txt has no links section`);
  const body = start + LINKS.length;
  const end = text.indexOf("\n--pulumi-hypervisor-- ", body);
  // the routes come first; the link lines after them are replaced
  const routes = text.slice(body).split("\n")[0] ?? "";
  const all = fixture("tap-links.json").trim();
  return `${text.slice(0, body)}${routes}\n${all}\n${text.slice(end)}`;
}
