import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROBE_MARK } from "../../provider/src/host/probe";
import { scriptBody } from "../../provider/src/host/script";
import { compactShell } from "../../provider/src/host/shell-compact";
import { BRIDGE_CONF } from "../../provider/src/bridge-helper-acl";
import { PORTS_DIR } from "../../provider/src/resources/bridge/observe";
import { FAILED } from "../../provider/src/resources/nat-rule/observe";
import { QEMU_BINARY } from "../../provider/src/resources/qemu-guest/argv";
import {
  BRIDGE_HELPER_PATHS,
  KVM_PROBE_TENTHS,
} from "../../provider/src/resources/qemu-guest/observe";
import { CLAIMS_DIR } from "../../provider/src/sysctl";

const SRC = join(__dirname, "../../provider/src");
const scripts = readdirSync(SRC, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith(".sh"))
  .map((f) => f.split("\\").join("/"))
  .sort();

function parses(shell: string, args: string[]): string {
  const r = spawnSync(shell, ["-n", ...args], { encoding: "utf8" });
  return r.status === 0 ? "" : `${shell} -n: ${r.stderr.trim() || `exit ${r.status}`}`;
}

/** bash's listing of the text as a function's body: its parse, without comments or layout. */
function parsed(text: string): string {
  const r = spawnSync("bash", ["-c", 'eval "f() {\n$1\n}" && declare -f f', "parsed", text], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`bash could not parse: ${r.stderr}`);
  return r.stdout;
}

describe("the shell scripts run on hosts", () => {
  it("are found", () => {
    expect(scripts.length).toBeGreaterThan(20);
  });

  // Each file as written, and as it travels (includes inlined), must parse in a POSIX sh and in
  // dash (Debian's /bin/sh); a failure names the file.
  it.each(scripts)("%s parses with sh -n and dash -n, alone and with its includes", (name) => {
    const problems = ["sh", "dash"].flatMap((shell) =>
      [parses(shell, [join(SRC, name)]), parses(shell, ["-c", scriptBody(name)])].filter(
        (p) => p !== "",
      ),
    );
    expect(problems, name).toEqual([]);
  });

  // They travel without comments, blank lines and indentation (host/shell-compact.ts). bash lists
  // a function's body from its parse: comments and layout go, every word, quote and here-document
  // stays. The same listing for source and compact text is the same program.
  it.each(scripts)("%s is the same program as it travels, and parses with dash -n", (name) => {
    const body = scriptBody(name);
    const compact = compactShell(body);
    expect(parsed(compact), name).toBe(parsed(body));
    expect(parses("dash", ["-c", compact]), name).toBe("");
    expect(compact.length, name).toBeLessThan(body.length);
  });

  it("travel in about half their bytes", () => {
    // the loop goes by a rule of its own (host/remote-shell.ts)
    const bodies = scripts.filter((s) => s !== "host/remote-shell.sh").map((s) => scriptBody(s));
    const before = bodies.reduce((n, b) => n + b.length, 0);
    const after = bodies.reduce((n, b) => n + compactShell(b).length, 0);
    expect(after / before).toBeLessThan(0.55);
  });

  it("name the paths and markers the TypeScript side uses", () => {
    const text = (name: string): string => readFileSync(join(SRC, name), "utf8");
    expect(text("host/probe.sh")).toContain(PROBE_MARK);
    expect(text("sysctl-claim.sh")).toContain(CLAIMS_DIR);
    expect(text("sysctl-probe.sh")).toContain(CLAIMS_DIR);
    expect(text("resources/tap-device/tap-probe.sh")).toContain(CLAIMS_DIR);
    expect(text("resources/bridge/bridge-probe.sh")).toContain(BRIDGE_CONF);
    expect(text("resources/bridge/bridge-probe.sh")).toContain(PORTS_DIR);
    expect(text("resources/bridge/qemu-bridge-helper.sh")).toContain(BRIDGE_CONF);
    expect(text("resources/qemu-guest/qemu-probe.sh")).toContain(BRIDGE_CONF);
    expect(text("resources/qemu-guest/qemu-probe.sh")).toContain(BRIDGE_HELPER_PATHS.join(" "));
    expect(text("resources/qemu-guest/qemu-probe.sh")).toContain(QEMU_BINARY);
    expect(text("resources/qemu-guest/kvm-probe.sh")).toContain(`-lt ${KVM_PROBE_TENTHS} `);
    expect(text("resources/nat-rule/nat-probe.sh")).toContain(`failed=${FAILED}`);
  });
});

describe("same_ns (host/same-ns.sh)", () => {
  // `same_ns A B` in a fresh shell, with the readlink fallback forced when asked; prints yes or no
  const sameNs = (shell: string, a: string, b: string, fallback: boolean): string => {
    const script = `${fallback ? "_same_ns_ef=0\n" : ""}${scriptBody("host/same-ns.sh")}
if same_ns "$1" "$2"; then echo yes; else echo no; fi`;
    const r = spawnSync(shell, ["-c", script, "same-ns.sh", a, b], { encoding: "utf8" });
    return r.stdout.trim();
  };

  it.each([
    ["dash", false],
    ["dash", true],
    ["bash", false],
    ["bash", true],
  ] as const)("in %s (readlink fallback: %s) tells one namespace from another", (shell, fb) => {
    expect(sameNs(shell, "/proc/self/ns/net", "/proc/self/ns/net", fb)).toBe("yes");
    expect(sameNs(shell, "/proc/self/ns/net", "/proc/thread-self/ns/net", fb)).toBe("yes");
    // two namespaces (of two kinds) and a process that is not there
    expect(sameNs(shell, "/proc/self/ns/net", "/proc/self/ns/mnt", fb)).toBe("no");
    expect(sameNs(shell, "/proc/999999999/ns/net", "/proc/self/ns/net", fb)).toBe("no");
    expect(sameNs(shell, "/proc/999999999/ns/net", "/proc/999999999/ns/net", fb)).toBe("no");
  });
});
