// The code the controller-CPU target is measured against: the provider as it was when the target
// was set ("controller CPU per resource operation halved against today's figure"), built from this
// repository's history and run by the bench beside today's code, in the same run and on the same
// lab hosts, so that the ratio compares code and not machines. (The figure recorded that day, 9.6
// ms, came from that day's bench on a quicker machine: the same code measured 15-23 ms with the
// bench and on the machines of later rounds.)
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../lab/harness";
import { BASELINE_COMMIT, shortCommit } from "./report";

/** Where the baseline's build is kept between runs (node_modules is not part of the checkout). */
export function baselineDir(root: string = REPO_ROOT, commit: string = BASELINE_COMMIT): string {
  return path.join(root, "node_modules", ".cache", "pulumi-hypervisor-bench", shortCommit(commit));
}

const STAMP = ".bench-baseline";

function git(root: string, args: string[]): string {
  return execFileSync("git", ["-C", root, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/**
 * Links every package of `from` (a node_modules directory) into `to`, except the checkout's link
 * to itself, which points at `to`'s parent instead: `require("pulumi-hypervisor/provider")` from
 * the baseline's directory must load the baseline's provider, with today's dependencies.
 */
export function linkDependencies(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    if (name === "pulumi-hypervisor" || name === ".cache" || name === ".package-lock.json")
      continue;
    symlinkSync(path.join(from, name), path.join(to, name));
  }
  symlinkSync("..", path.join(to, "pulumi-hypervisor"), "dir");
}

/**
 * Returns the directory of a built copy of the baseline commit, building it the first time (about
 * 15 s: `git archive`, the TypeScript compiler, the kept scripts copied beside their modules).
 * Throws, naming the fix, when the commit is not in this clone's history.
 */
export function prepareBaseline(
  log: (line: string) => void,
  root: string = REPO_ROOT,
  commit: string = BASELINE_COMMIT,
): string {
  const dir = baselineDir(root, commit);
  const stamp = path.join(dir, STAMP);
  if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === commit) return dir;
  try {
    git(root, ["cat-file", "-e", `${commit}^{commit}`]);
  } catch (e) {
    const what = `the baseline code (commit ${shortCommit(commit)}, what the controller-CPU target compares with)`;
    const why =
      (e as NodeJS.ErrnoException).code === "ENOENT"
        ? "is built from this repository's history, and git is not installed (apt-get install git)"
        : `is not in this clone's history: fetch it (git fetch --unshallow origin)`;
    throw new Error(`bench: ${what} ${why}, or leave it out with --modes pooled,per-command`);
  }
  log(`building the baseline code (commit ${shortCommit(commit)}) into ${dir}`);
  const parent = path.dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = mkdtempSync(path.join(parent, `${path.basename(dir)}.tmp-`));
  try {
    const tar = path.join(tmp, "baseline.tar");
    git(root, ["archive", "--format=tar", "-o", tar, commit]);
    execFileSync("tar", ["-xf", tar, "-C", tmp]);
    rmSync(tar);
    const ours = readFileSync(path.join(root, "package-lock.json"), "utf8");
    if (readFileSync(path.join(tmp, "package-lock.json"), "utf8") !== ours) {
      log("  its package-lock.json differs from today's: it runs on today's dependencies");
    }
    linkDependencies(path.join(root, "node_modules"), path.join(tmp, "node_modules"));
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
    execFileSync(process.execPath, [tsc, "-p", path.join(tmp, "tsconfig.json")], {
      cwd: tmp,
      stdio: ["ignore", "pipe", "pipe"],
    });
    execFileSync(process.execPath, [path.join(tmp, "scripts", "copy-shell.js")], {
      cwd: tmp,
      stdio: ["ignore", "pipe", "pipe"],
    });
    writeFileSync(path.join(tmp, STAMP), `${commit}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    const detail = (e as { stdout?: Buffer; stderr?: Buffer }).stdout?.toString() ?? "";
    throw new Error(
      `bench: building the baseline code failed: ${e instanceof Error ? e.message : String(e)}` +
        (detail ? `\n${detail}` : ""),
    );
  }
  return dir;
}
