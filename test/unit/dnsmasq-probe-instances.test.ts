// The DnsmasqInstance probe's list of the host's instances (their interfaces), run by sh on a
// directory of the test's own in place of the config root: one grep for every instance.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseProbe } from "../../provider/src/host/probe";
import { scriptBody } from "../../provider/src/host/script";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Returns the probe's `instances` section for a config root holding these files. */
function instances(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "dnsmasq-probe-"));
  dirs.push(dir);
  const root = join(dir, "root");
  mkdirSync(root);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(root, name.split("/")[0] ?? ""), { recursive: true });
    writeFileSync(join(root, name), text);
  }
  const none = join(dir, "none");
  // CONF HOSTS PIDFILE LEASES CONFIG-DIR RUN-DIR DATA-DIR CONFIG-ROOT UNIT UNIT-FILE INTERFACE
  const args = [none, none, none, none, none, none, none, root, "none.service", none, "lo"];
  const body = scriptBody("resources/dnsmasq-instance/dnsmasq-probe.sh");
  const out = execFileSync("sh", ["-c", body, "dnsmasq-probe.sh", ...args], { encoding: "utf8" });
  return parseProbe(out, "the dnsmasq probe").need("instances");
}

describe("the DnsmasqInstance probe's instances", () => {
  it("lists the interface line of every instance's config, each with its file", () => {
    const text = instances({
      "a/dnsmasq.conf": "port=0\ninterface=br0\nbind-interfaces\n",
      "b/dnsmasq.conf": "interface=br1\n",
      // an instance whose config names no interface, and a directory without a config
      "c/dnsmasq.conf": "port=0\n",
      "d/hosts": "interface=br9\n",
    });
    const root = text.slice(0, text.indexOf("/a/dnsmasq.conf"));
    expect(text.trim().split("\n")).toEqual([
      `${root}/a/dnsmasq.conf:interface=br0`,
      `${root}/b/dnsmasq.conf:interface=br1`,
    ]);
  });

  it("lists one instance with its file too, and none when there is none", () => {
    expect(instances({ "a/dnsmasq.conf": "interface=br0\n" })).toMatch(
      /\/root\/a\/dnsmasq\.conf:interface=br0\n$/,
    );
    expect(instances({})).toBe("");
  });
});
