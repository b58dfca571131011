// The SDK as a program sees it, run under pulumi.runtime.setMocks.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { runProgramWithMocks, type CapturedResource } from "../../lab/engine/mocks";
import { scratchDirs } from "../support/scratch";

const scratch = scratchDirs("sdk-test-");

const SECRET_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n";

function labProgram(hostsFile: string): () => Promise<unknown> {
  return async () => {
    process.env["HYPERVISOR_LAB_HOSTS"] = hostsFile;
    // a fresh module registry, so the program runs again instead of coming from the cache
    vi.resetModules();
    return await import("../../examples/lab/index");
  };
}

let first: CapturedResource[];
let second: CapturedResource[];

beforeAll(async () => {
  const dir = scratch();
  const hostsFile = join(dir, "hosts.json");
  const hosts = [1, 2].map((i) => ({
    name: `h${i}`,
    index: i,
    connection: {
      host: `198.18.${i}.2`,
      privateKey: SECRET_KEY,
      password: "pw-Secret.9",
      hostKey: "SHA256:x",
    },
  }));
  writeFileSync(hostsFile, JSON.stringify(hosts));
  first = await runProgramWithMocks(labProgram(hostsFile));
  second = await runProgramWithMocks(labProgram(hostsFile));
});

describe("SDK under mocks", () => {
  it("runs the lab example: bridge, dnsmasq, NAT and a tap per host, with the dynamic type tokens", () => {
    const names = first.map((r) => [
      r.type.replace("pulumi-nodejs:dynamic/hypervisor:", ""),
      r.name,
    ]);
    expect(names.sort()).toEqual(
      [
        ["Bridge", "h1-br-guests"],
        ["Bridge", "h2-br-guests"],
        ["DnsmasqInstance", "h1-dhcp"],
        ["DnsmasqInstance", "h2-dhcp"],
        ["NatRule", "h1-nat"],
        ["NatRule", "h2-nat"],
        ["TapDevice", "h1-tap"],
        ["TapDevice", "h2-tap"],
      ].sort(),
    );
    expect(first.find((r) => r.name === "h1-br-guests")?.inputs).toMatchObject({
      name: "br-guests",
      addresses: ["198.18.101.1/24", "2001:db8:101::1/64"],
      allowQemuBridgeHelper: true,
    });
  });

  it("marks connection secret", () => {
    for (const r of first) expect(r.secretKeys).toContain("connection");
  });

  it("serializes a small __provider, byte-identical across runs, with no secret in it", () => {
    const text = first.find((r) => r.type.endsWith(":Bridge"))?.inputs["__provider"];
    expect(typeof text).toBe("string");
    const bridges = (rs: CapturedResource[]) => rs.filter((r) => r.type.endsWith(":Bridge"));
    expect(text).toBe(bridges(second)[0]?.inputs["__provider"]);
    expect(text).toBe(bridges(first)[1]?.inputs["__provider"]);
    expect((text as string).length).toBeLessThan(6000);
    expect(text).toContain('require("pulumi-hypervisor/provider")');
    expect(text).not.toContain("secret-key-material");
    expect(text).not.toContain("c2VjcmV0LWtleS1tYXRlcmlhbA");
    expect(text).not.toContain("pw-Secret.9");
  });

  it("the root package exports the SDK after the build", () => {
    const sdk = require("pulumi-hypervisor") as Record<string, unknown>;
    expect(typeof sdk["Bridge"]).toBe("function");
  });
});
