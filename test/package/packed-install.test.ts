// The package as a user gets it: `npm pack` (its prepack builds dist/), installed from the tarball
// into a program in another folder that pins a different @pulumi/pulumi than this repo's. The
// program runs under `pulumi.runtime.setMocks`, and the tree holds exactly one @pulumi/pulumi.
// Needs the npm registry (or a warm npm cache) for the program's dependencies.
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NativeProviderPlugin, UNKNOWN, urnOf } from "../../lab/engine/native-engine";

const run = promisify(execFile);
const REPO_ROOT = path.resolve(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
  version: string;
  peerDependencies: Record<string, string>;
};
/** The lowest @pulumi/pulumi the peer range allows: what a program on an older SDK has. */
const PROGRAM_PULUMI = pkg.peerDependencies["@pulumi/pulumi"]!.replace(/^\^/, "");

const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const registered = [];
pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, provider: args.provider ?? "" });
      return { id: args.name + "-id", state: args.inputs };
    },
    call: () => ({}),
  },
  "proj",
  "stack",
  false,
);
const hv = require("pulumi-hypervisor");
const native = require("pulumi-hypervisor/native");
const connection = { host: "198.18.0.2", password: "pw" };
const provider = new native.Provider("host", { connection });
const nb = new native.Bridge("nb", { name: "br0" }, { provider });
const nt = new native.TapDevice("nt", { name: "tap0", bridge: nb.name }, { provider });
const db = new hv.Bridge("db", { connection, name: "br1" });
pulumi.all([nb.id, nt.id, db.id]).apply(() => {
  process.stdout.write(JSON.stringify({
    registered,
    sameRuntime: nb instanceof pulumi.CustomResource && db instanceof pulumi.dynamic.Resource,
  }));
});
`;

/** Every installed copy of a package under `dir` (nested node_modules included). */
function copiesOf(dir: string, name: string): string[] {
  const out: string[] = [];
  const walk = (nm: string): void => {
    if (!existsSync(nm)) return;
    if (existsSync(path.join(nm, name, "package.json"))) out.push(path.join(nm, name));
    for (const entry of readdirSync(nm, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name === ".bin") continue;
      const scoped = entry.name.startsWith("@");
      const pkgs = scoped
        ? readdirSync(path.join(nm, entry.name)).map((n) => path.join(nm, entry.name, n))
        : [path.join(nm, entry.name)];
      for (const p of pkgs) walk(path.join(p, "node_modules"));
    }
  };
  walk(path.join(dir, "node_modules"));
  return out;
}

describe("the packed tarball, installed beside another @pulumi/pulumi", () => {
  let work: string;
  let program: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "hv-pack-"));
    const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", work], {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    const tarball = path.join(work, stdout.trim().split("\n").pop()!);
    program = path.join(work, "program");
    await run("mkdir", ["-p", program]);
    writeFileSync(
      path.join(program, "package.json"),
      JSON.stringify({
        name: "program",
        private: true,
        dependencies: { "@pulumi/pulumi": PROGRAM_PULUMI, "pulumi-hypervisor": `file:${tarball}` },
      }),
    );
    writeFileSync(path.join(program, "index.js"), PROGRAM);
    await run("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts"], {
      cwd: program,
      maxBuffer: 16 * 1024 * 1024,
    });
  }, 600_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("holds exactly one @pulumi/pulumi, the program's, and one gRPC and protobuf runtime", () => {
    const copies = copiesOf(program, "@pulumi/pulumi");
    expect(copies).toEqual([path.join(program, "node_modules", "@pulumi", "pulumi")]);
    const version = (
      JSON.parse(readFileSync(path.join(copies[0]!, "package.json"), "utf8")) as {
        version: string;
      }
    ).version;
    expect(version).toBe(PROGRAM_PULUMI);
    expect(copiesOf(program, "google-protobuf")).toHaveLength(1);
    expect(copiesOf(program, "@grpc/grpc-js")).toHaveLength(1);
  });

  it("contains its built code (prepack) and runs a program under setMocks", async () => {
    const dist = path.join(program, "node_modules", "pulumi-hypervisor", "dist");
    expect(existsSync(path.join(dist, "sdk", "native", "index.js"))).toBe(true);
    const { stdout } = await run(process.execPath, ["index.js"], { cwd: program });
    const out = JSON.parse(stdout) as {
      registered: { type: string; name: string }[];
      sameRuntime: boolean;
    };
    expect(out.sameRuntime).toBe(true);
    expect(out.registered.map((r) => [r.type, r.name])).toEqual([
      ["pulumi:providers:hypervisor", "host"],
      ["hypervisor:index:Bridge", "nb"],
      ["hypervisor:index:TapDevice", "nt"],
      ["pulumi-nodejs:dynamic/hypervisor:Bridge", "db"],
    ]);
  });

  it("its plugin runs from the install on that @pulumi/pulumi's stubs", async () => {
    const plugin = await NativeProviderPlugin.start({
      plugin: path.join(program, "node_modules", ".bin", "pulumi-resource-hypervisor"),
      cwd: program,
    });
    try {
      expect(await plugin.getPluginInfo()).toEqual({ version: pkg.version });
      expect((JSON.parse(await plugin.getSchema()) as { version: string }).version).toBe(
        pkg.version,
      );
      expect((await plugin.checkConfig({}, { connection: UNKNOWN })).failures).toEqual([]);
      await plugin.configure({ connection: { host: "127.0.0.1", port: 1 } });
      const urn = urnOf("hypervisor:index:Bridge", "b");
      expect((await plugin.check(urn, {}, { name: "br0", mtu: -1 })).failures).toEqual([
        { property: "mtu", reason: expect.stringMatching(/^mtu: /) },
      ]);
    } finally {
      await plugin.stop();
    }
  });

  it("its plugin file copied alone (pulumi plugin install --file) runs from the program's install", async () => {
    const plugins = path.join(work, "plugins");
    mkdirSync(plugins);
    const copy = path.join(plugins, "pulumi-resource-hypervisor");
    copyFileSync(path.join(REPO_ROOT, "provider", "bin", "pulumi-resource-hypervisor"), copy);
    const plugin = await NativeProviderPlugin.start({ plugin: copy, cwd: program });
    try {
      expect(await plugin.getPluginInfo()).toEqual({ version: pkg.version });
    } finally {
      await plugin.stop();
    }
  });
});
