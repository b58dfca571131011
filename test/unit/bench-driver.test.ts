// The bench runs the provider of its own checkout: a second checkout whose node_modules leads to
// another's provider is refused, so that two builds are never "compared" as one build twice.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { foreignProvider, pluginResolves, specConnection } from "../../bench/driver";
import type { Relay } from "../../bench/relay";
import type { LabHost } from "../../lab";

const work = mkdtempSync(path.join(tmpdir(), "bench-driver-test-"));

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** A checkout at work/NAME with its built provider; node_modules/pulumi-hypervisor links to `to`. */
function checkout(name: string, to: string): string {
  const root = path.join(work, name);
  mkdirSync(path.join(root, "dist", "provider"), { recursive: true });
  mkdirSync(path.join(root, "node_modules"), { recursive: true });
  writeFileSync(path.join(root, "dist", "provider", "index.js"), "");
  symlinkSync(to, path.join(root, "node_modules", "pulumi-hypervisor"));
  return root;
}

describe("foreignProvider", () => {
  it("accepts the checkout's own provider and names the other one's", () => {
    const main = checkout("main", "..");
    // a worktree whose node_modules entries link to main's: the package link too
    const old = checkout("old", main);
    const viaOld = path.join(
      old,
      "node_modules",
      "pulumi-hypervisor",
      "dist",
      "provider",
      "index.js",
    );
    const viaMain = path.join(
      main,
      "node_modules",
      "pulumi-hypervisor",
      "dist",
      "provider",
      "index.js",
    );
    expect(foreignProvider(viaMain, main)).toBeUndefined();
    const why = foreignProvider(viaOld, old);
    expect(why).toContain(path.join(main, "dist", "provider", "index.js"));
    expect(why).toContain(`not from this checkout (${old})`);
    // relinked to itself, the worktree runs its own
    rmSync(path.join(old, "node_modules", "pulumi-hypervisor"));
    symlinkSync("..", path.join(old, "node_modules", "pulumi-hypervisor"));
    expect(foreignProvider(viaOld, old)).toBeUndefined();
  });
});

describe("pluginResolves", () => {
  it("follows the working directory's node_modules, as the plugin's require-from-string does", () => {
    const pkg = (root: string): void =>
      writeFileSync(
        path.join(root, "package.json"),
        JSON.stringify({
          name: "pulumi-hypervisor",
          exports: { "./provider": "./dist/provider/index.js" },
        }),
      );
    const mine = checkout("resolves-mine", "..");
    pkg(mine);
    expect(pluginResolves(mine)).toBe(path.join(mine, "dist", "provider", "index.js"));
    // a baseline whose link leads elsewhere loads the other's provider: the bench refuses it
    const other = checkout("resolves-other", mine);
    pkg(other);
    expect(pluginResolves(other)).toBe(path.join(mine, "dist", "provider", "index.js"));
    expect(foreignProvider(pluginResolves(other), other)).toContain("not from this checkout");
  });
});

describe("specConnection", () => {
  const conn = { host: "198.18.0.2", port: 22, user: "root", privateKey: "K", hostKey: "H" };
  const h = { name: "hv1", connection: () => ({ ...conn }) } as unknown as LabHost;
  const relay = { host: "127.0.0.1", port: 40000 } as unknown as Relay;

  it("goes through the host's relay when there is one, and adds compression in that mode only", () => {
    expect(specConnection(h, new Map())).toEqual(conn);
    const relays = new Map([["hv1", relay]]);
    expect(specConnection(h, relays, "pooled")).toEqual({
      ...conn,
      host: "127.0.0.1",
      port: 40000,
    });
    expect(specConnection(h, relays, "compressed")).toEqual({
      ...conn,
      host: "127.0.0.1",
      port: 40000,
      compression: true,
    });
    expect(specConnection(h, new Map(), "per-command")).not.toHaveProperty("compression");
  });
});
