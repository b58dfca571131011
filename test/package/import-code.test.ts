// The code `pulumi import` prints for a Bridge and a TapDevice compiles and registers the native
// types. The text is built the way the engine's Node.js program generator builds it
// (pkg/codegen/nodejs/gen_program.go): `import * as <package> from "<language.nodejs.packageName>"`,
// then `new <package>.<Type>(name, {inputs}, {protect: true})` for each imported resource. It is
// compiled with the tsconfig of `pulumi new typescript` (moduleResolution "node") and with
// node16 resolution, against the built package (`npm run build` first).
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const REPO_ROOT = path.resolve(__dirname, "..", "..");
const schema = JSON.parse(readFileSync(path.join(REPO_ROOT, "schema.json"), "utf8")) as {
  name: string;
  language?: { nodejs?: { packageName?: string } };
};
const importPath = schema.language?.nodejs?.packageName ?? `@pulumi/${schema.name}`;

/** What `pulumi import hypervisor:index:Bridge br0 br0` (and the tap) print, in TypeScript. */
export const IMPORTED_PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import * as ${schema.name} from "${importPath}";

const br0 = new ${schema.name}.Bridge("br0", {
    addresses: ["198.18.100.1/24"],
    allowQemuBridgeHelper: false,
    macAddress: "52:54:00:12:34:56",
    mtu: 1500,
    name: "br0",
    ports: [],
    stp: false,
    vlanFiltering: false,
}, {
    protect: true,
});
const tap0 = new ${schema.name}.TapDevice("tap0", {
    bridge: "br0",
    group: "kvm",
    multiQueue: false,
    name: "tap0",
    owner: "libvirt-qemu",
    vnetHdr: true,
}, {
    protect: true,
});
`;

// The tsconfig.json of `pulumi new typescript`.
const PULUMI_TSCONFIG = {
  compilerOptions: {
    strict: true,
    outDir: "bin",
    target: "es2020",
    module: "commonjs",
    moduleResolution: "node",
    sourceMap: true,
    experimentalDecorators: true,
    pretty: false,
    noFallthroughCasesInSwitch: true,
    noImplicitReturns: true,
    forceConsistentCasingInFileNames: true,
  },
  files: ["index.ts"],
};

describe("the code pulumi import prints", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "hv-import-"));
    mkdirSync(path.join(dir, "node_modules"));
    symlinkSync(REPO_ROOT, path.join(dir, "node_modules", "pulumi-hypervisor"), "dir");
    symlinkSync(
      path.join(REPO_ROOT, "node_modules", "@pulumi"),
      path.join(dir, "node_modules", "@pulumi"),
      "dir",
    );
    writeFileSync(path.join(dir, "index.ts"), IMPORTED_PROGRAM);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const tsc = path.join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  async function compile(moduleResolution: string, module: string): Promise<string> {
    const config = {
      ...PULUMI_TSCONFIG,
      compilerOptions: { ...PULUMI_TSCONFIG.compilerOptions, moduleResolution, module },
    };
    writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(config));
    return run(process.execPath, [tsc, "-p", dir]).then(
      () => "",
      (e: { stdout?: string; message?: string }) => e.stdout || e.message || "tsc failed",
    );
  }

  it("names the native classes", () => {
    expect(importPath).toBe("pulumi-hypervisor/native");
  });

  it("compiles with node16 module resolution", async () => {
    expect(await compile("node16", "node16")).toBe("");
  });

  it("compiles with the tsconfig of pulumi new typescript and registers the native types", async () => {
    expect(await compile("node", "commonjs")).toBe("");
    const main = `
const pulumi = require("@pulumi/pulumi");
const seen = [];
pulumi.runtime.setMocks({
  newResource: (a) => { seen.push([a.type, a.name]); return { id: a.name, state: a.inputs }; },
  call: () => ({}),
}, "proj", "stack", false);
require("./bin/index.js");
setTimeout(() => process.stdout.write(JSON.stringify(seen)), 500);
`;
    writeFileSync(path.join(dir, "main.js"), main);
    const { stdout } = await run(process.execPath, ["main.js"], { cwd: dir });
    expect((JSON.parse(stdout) as string[][]).sort()).toEqual([
      ["hypervisor:index:Bridge", "br0"],
      ["hypervisor:index:TapDevice", "tap0"],
    ]);
  });
});
