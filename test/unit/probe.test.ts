import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";

const LIB = readFileSync(join(__dirname, "../../provider/src/host/probe.sh"), "utf8");

describe("the probe format", () => {
  it("gives each section exactly what the probe printed, final newline or not", () => {
    const out = execFileSync(
      "sh",
      [
        "-c",
        `${LIB}\nsection a; printf 'no newline'\nsection b; printf 'one\\n'\nsection empty\nsection disk "$1"; echo x`,
        "probe.sh",
        "/var/lib/a b.img",
      ],
      { encoding: "utf8" },
    );
    const p = parseProbe(out, "the test probe");
    expect(p.sections).toEqual([
      { name: "a", arg: "", body: "no newline" },
      { name: "b", arg: "", body: "one\n" },
      { name: "empty", arg: "", body: "" },
      { name: "disk", arg: "/var/lib/a b.img", body: "x\n" },
    ]);
    expect(
      formatProbe(p.sections.map((s) => [s.arg ? `${s.name} ${s.arg}` : s.name, s.body])),
    ).toBe(out);
  });

  it("finds sections by name, so adding one shifts nothing, and names a missing one", () => {
    const p = parseProbe(
      formatProbe([
        ["links", "[]\n"],
        ["new", "1"],
        ["disk /x", "{}"],
      ]),
      "the x probe",
    );
    expect(p.get("links")).toBe("[]\n");
    expect(p.get("absent")).toBeUndefined();
    expect(p.all("disk").map((s) => s.arg)).toEqual(["/x"]);
    expect(() => p.need("routes")).toThrow('unexpected output of the x probe: no section "routes"');
  });
});
