// Scripts travel to hosts without comments, blank lines and indentation (host/shell-compact.ts):
// about half their bytes. What goes must be the same program: the same behaviour where quoting,
// here-documents and line continuations make a `#` or a blank data (every shipped script's parse:
// shell-scripts.test.ts).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// declares where apply-batch.sh takes the commands it runs
import "../../provider/src/apply";
import {
  argvWithCachedScripts,
  argvWithCompactScripts,
  scriptArgv,
  scriptBody,
  scriptIn,
} from "../../provider/src/host/script";
import { compactShell } from "../../provider/src/host/shell-compact";

const SRC = join(__dirname, "../../provider/src");

function dash(text: string, args: string[] = []): { status: number | null; out: string } {
  const r = spawnSync("dash", ["-c", text, "t.sh", ...args], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

// every place where a `#` or leading blanks are data, and comments where they are not: each
// line of a script, and what it becomes (null: it goes; nothing: it stays as it is)
const TRICKY: Array<readonly [string, (string | null)?]> = [
  ["#!/bin/sh", null],
  ["# a comment line, then a blank one", null],
  ["", null],
  ["  x=1   # don't: an apostrophe in a comment opens no quote", "x=1"],
  ['echo "$x" # it\'s', 'echo "$x"'],
  ["cat <<EOF"],
  ["# a here-document's line"],
  ["  indented $x"],
  ["EOF"],
  ["cat <<-'E2'"],
  ["\t# a tab-stripped here-document's line"],
  ["\tE2"],
  ["s='"],
  ["  # inside single quotes"],
  ["'"],
  ["printf '%s\\n' \"$s\""],
  ['d="a'],
  [' # inside double quotes \\" still'],
  ['"'],
  ["printf '%s\\n' \"$d\""],
  ["set -- p q"],
  ["echo a#b ${#x} $# \\# x\\ #not-a-comment"],
  ["echo joined\\"],
  ["#not-a-comment: the word goes on"],
  ["echo tail \\  # an escaped blank stays", "echo tail \\ "],
  ["f() {"],
  ["    # an indented comment", null],
  ["    echo in f  # after code", "echo in f"],
  ["}"],
  ["f"],
  ["", null],
];
const SOURCE = TRICKY.map(([line]) => line).join("\n");

describe("compactShell", () => {
  it("drops comments, blank lines and indentation, and nothing that is data", () => {
    const kept = TRICKY.flatMap(([line, compact]) => (compact === null ? [] : [compact ?? line]));
    expect(compactShell(SOURCE)).toBe(kept.join("\n"));
  });

  it("runs as its source does", () => {
    const before = dash(SOURCE);
    expect(before.status).toBe(0);
    expect(before.out).toContain("# a here-document's line\n  indented 1\n");
    expect(before.out).toContain("a#b 1 2 # x #not-a-comment\n");
    expect(before.out).toContain("joined#not-a-comment: the word goes on\n");
    expect(dash(compactShell(SOURCE))).toEqual(before);
  });

  it("leaves the rest as it is after a `<<` it cannot read", () => {
    const text = "echo a\n  # b\necho $((1 <<\n  # c\n2))";
    expect(compactShell(text)).toBe("echo a\necho $((1 <<\n  # c\n2))");
  });
});

describe("scripts on the way to a host", () => {
  const probe = scriptArgv(scriptIn(SRC, "sysctl-probe.sh", ["net/ipv4/ip_forward"]));
  const batch = (kind: string) =>
    scriptArgv(scriptIn(SRC, "apply-batch.sh", [kind, "0", String(probe.length), ...probe]));

  it("carry their compact text on a session of their own, nested commands' too", () => {
    const argv = argvWithCompactScripts(batch("0"));
    expect(argv.slice(0, 2)).toEqual(["sh", "-c"]);
    expect(argv[2]).toBe(compactShell(scriptBody("apply-batch.sh")));
    expect(argv.slice(4, 7)).toEqual(["0", "0", String(probe.length)]);
    expect(argv.slice(7)).toEqual([
      "sh",
      "-c",
      compactShell(scriptBody("sysctl-probe.sh")),
      ...probe.slice(3),
    ]);
    // an `ip` batch's lines are data, whatever they look like
    expect(argvWithCompactScripts(batch("ip-batch")).slice(4)).toEqual([
      "ip-batch",
      "0",
      String(probe.length),
      ...probe,
    ]);
  });

  it("run on a session of their own as their source does", () => {
    const run = (argv: readonly string[]) => {
      const r = spawnSync(argv[0] ?? "", argv.slice(1), { encoding: "utf8" });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const source = run(batch("0"));
    expect(source.stderr).toContain("@@pulumi-hypervisor-step 0");
    expect(run(argvWithCompactScripts(batch("0")))).toEqual(source);
  });

  it("are kept by a remote shell as their compact text", () => {
    const { scripts: kept } = argvWithCachedScripts(batch("0"));
    expect(kept.map((k) => k.body).sort()).toEqual(
      [scriptBody("apply-batch.sh"), scriptBody("sysctl-probe.sh")].map(compactShell).sort(),
    );
  });
});
