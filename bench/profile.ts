// `npx tsx bench/profile.ts DIR [--all]`: sums the V8 CPU profiles that
// `npm run bench -- --cpu-prof DIR` wrote (one per plugin process) by where the time went. By
// default only the samples from the first call into the provider on count: the plugin's start-up
// (node, @pulumi/pulumi, typescript for closure serialization) is reported apart by the bench and
// is not per-operation work.
//
// A V8 profile samples the main thread's stack at intervals whether it runs or not: a thread
// descheduled inside a system call (a socket write that woke the lab host's sshd on this machine)
// is counted there although the kernel does not charge it. Compare with the bench's cgroup
// figures, which count CPU only.
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

/** The part of a .cpuprofile (Chrome DevTools format) that the sums need. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Milliseconds per key, and their total. */
export interface Sums {
  totalMs: number;
  byCategory: Map<string, number>;
  byLeaf: Map<string, number>;
  byProviderFrame: Map<string, number>;
}

const PROVIDER = /\/dist\/provider\/src\//;

// The innermost node_modules/<package> of the URL; dist/... for the repository's own code.
function where(url: string): string {
  const pkgs = url.match(/node_modules\/(@[^/]+\/)?[^/]+/g);
  if (pkgs) return (pkgs[pkgs.length - 1] ?? "").replace("node_modules/", "");
  const i = url.indexOf("/dist/");
  return i >= 0 ? url.slice(i + 1) : url;
}

function frameName(f: CallFrame): string {
  return `${f.functionName || "(anonymous)"} ${where(f.url)}:${f.lineNumber + 1}`;
}

// The first rule that matches a sample's stack (innermost frame first) names its category.
function categoryOf(stack: readonly CallFrame[]): string {
  const leaf = stack[0];
  const any = (re: RegExp): boolean => stack.some((f) => re.test(`${f.functionName} ${f.url}`));
  if (!leaf) return "other";
  if (any(/Module\._load/)) return "module loading";
  if (any(/prepareStackTrace/)) return "stack traces (source maps)";
  if (leaf.functionName === "(garbage collector)") return "garbage collection";
  if (/node_modules\/zod\//.test(leaf.url)) return "zod";
  if (any(/node_modules\/ssh2\//)) return "ssh2 and its socket writes";
  if (PROVIDER.test(leaf.url)) return "provider code (self)";
  if (any(/google-protobuf|@grpc\/grpc-js|node:internal\/http2|@pulumi\/pulumi/)) {
    return "gRPC, protobuf and the plugin";
  }
  if (stack.some((f) => PROVIDER.test(f.url))) return "node built-ins called by the provider";
  return `other: ${leaf.functionName || "(anonymous)"}`;
}

function add(m: Map<string, number>, key: string, ms: number): void {
  m.set(key, (m.get(key) ?? 0) + ms);
}

/** Returns the profile's sampled time by category, by innermost frame and by provider frame. */
export function sumProfile(p: CpuProfile, opts: { all?: boolean } = {}): Sums {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const sums: Sums = {
    totalMs: 0,
    byCategory: new Map(),
    byLeaf: new Map(),
    byProviderFrame: new Map(),
  };
  let counting = opts.all === true;
  p.samples.forEach((sample, i) => {
    const ms = (p.timeDeltas[i] ?? 0) / 1000;
    const stack: CallFrame[] = [];
    for (let id: number | undefined = sample; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id);
      if (node) stack.push(node.callFrame);
    }
    if (!counting && stack.some((f) => PROVIDER.test(f.url))) counting = true;
    const leaf = stack[0];
    if (!counting || !leaf || leaf.functionName === "(idle)") return;
    sums.totalMs += ms;
    add(sums.byCategory, categoryOf(stack), ms);
    add(sums.byLeaf, frameName(leaf), ms);
    const own = stack.find((f) => PROVIDER.test(f.url));
    add(sums.byProviderFrame, own ? frameName(own) : "(no provider frame)", ms);
  });
  return sums;
}

/** Returns the sums of several profiles added together. */
export function mergeSums(all: readonly Sums[]): Sums {
  const out: Sums = {
    totalMs: 0,
    byCategory: new Map(),
    byLeaf: new Map(),
    byProviderFrame: new Map(),
  };
  for (const s of all) {
    out.totalMs += s.totalMs;
    for (const [k, v] of s.byCategory) add(out.byCategory, k, v);
    for (const [k, v] of s.byLeaf) add(out.byLeaf, k, v);
    for (const [k, v] of s.byProviderFrame) add(out.byProviderFrame, k, v);
  }
  return out;
}

/** Returns the report text: the largest entries of each table, in ms and percent of the total. */
export function renderSums(s: Sums, top = 25): string {
  const table = (title: string, m: Map<string, number>): string[] => [
    `${title}:`,
    ...[...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => {
        const pct = ((100 * v) / (s.totalMs || 1)).toFixed(1);
        return `${v.toFixed(0).padStart(7)} ms ${pct.padStart(5)}%  ${k}`;
      }),
    "",
  ];
  return [
    `sampled ${s.totalMs.toFixed(0)} ms`,
    "",
    ...table("by category", s.byCategory),
    ...table("by innermost frame (self time)", s.byLeaf),
    ...table("by innermost provider frame (time in it and what it called)", s.byProviderFrame),
  ].join("\n");
}

function main(argv: readonly string[]): void {
  const dir = argv.find((a) => !a.startsWith("--"));
  if (dir === undefined) {
    process.stderr.write("usage: npx tsx bench/profile.ts DIR [--all]\n");
    process.exit(2);
  }
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) throw new Error(`no .cpuprofile files in ${dir}`);
  const sums = files.map((f) =>
    sumProfile(JSON.parse(readFileSync(path.join(dir, f), "utf8")) as CpuProfile, {
      all: argv.includes("--all"),
    }),
  );
  process.stdout.write(`${files.length} profiles in ${dir}\n${renderSums(mergeSums(sums))}\n`);
}

if (require.main === module) main(process.argv.slice(2));
