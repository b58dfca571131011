// Namespace holders: one long-lived process per lab host (and one for the WAN) that owns the
// host's mount and UTS namespaces inside its network namespace. `sh` runs the mount setup, then
// execs a perl child subreaper that starts sshd and reaps whatever else runs there.
import { spawn } from "node:child_process";
import { LAB_ENV, runLocal, tail, type ExecOptions, type ExecResult } from "./exec";
import { HOLDER_SETUP } from "./mounts";

const HOLDER_READY_TIMEOUT_MS = 20_000;

// The holder's last stage: a child subreaper (like init on a real host) so that daemons started
// over SSH (dnsmasq, qemu -daemonize) are reaped when they exit instead of lingering as zombies.
// It starts sshd (if given) as its child, prints "ready <sshd pid>", and then only reaps.
const REAPER = String.raw`
use strict; use POSIX ();
$| = 1;
my %prctl = (x86_64 => 157, aarch64 => 167);
my $nr = $prctl{(POSIX::uname())[4]} // die "unknown architecture for prctl\n";
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
my $state = shift @ARGV;
my $child = 0;
if (@ARGV) {
  $child = fork() // die "fork: $!\n";
  if ($child == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', "$state/sshd.stderr";
    open STDERR, '>&', \*STDOUT;
    exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n";
  }
}
print "ready $child\n";
open STDIN, '<', '/dev/null'; open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
for (;;) { sleep 1 if wait() == -1 }
`;

export interface HolderStarted {
  holderPid: number;
  childPid: number;
}

/** Returns the pids of a new namespace holder in netns; resolves once its setup ran and its child (if any) forked. */
export function startHolder(
  netns: string,
  stateDir: string,
  hostname: string,
  kind: "host" | "wan",
  childArgv: readonly string[],
): Promise<HolderStarted> {
  const argv = [
    "nsenter",
    `--net=/run/netns/${netns}`,
    "--",
    "unshare",
    "--mount",
    "--uts",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    HOLDER_SETUP,
    "sh",
    REAPER,
    stateDir,
    hostname,
    kind,
    ...childArgv,
  ];
  return new Promise((resolve, reject) => {
    // Detached: the holder outlives a CLI `up` and is not hit by the caller's Ctrl-C.
    const child = spawn(argv[0] ?? "nsenter", argv.slice(1), {
      cwd: "/",
      env: LAB_ENV,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let done = false;
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
      reject(new Error(`lab ${netns}: namespace holder ${why}: ${tail(err)}`));
    };
    const timer = setTimeout(
      () => fail(`did not get ready within ${HOLDER_READY_TIMEOUT_MS} ms`),
      HOLDER_READY_TIMEOUT_MS,
    );
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString("utf8");
      const m = /^ready (\d+)$/m.exec(out);
      if (m && !done && child.pid !== undefined) {
        done = true;
        clearTimeout(timer);
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        resolve({ holderPid: child.pid, childPid: Number(m[1]) });
      }
    });
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString("utf8");
    });
    child.on("error", (e) => fail(`could not start: ${e.message}`));
    child.on("exit", (code, signal) => fail(`exited (${signal ?? code}) during setup`));
  });
}

/** Returns the result of argv run inside the namespaces (net, mount, uts) holderPid holds. */
export function execIn(holderPid: number, argv: string[], opts?: ExecOptions): Promise<ExecResult> {
  return runLocal(["nsenter", "-t", String(holderPid), "-m", "-u", "-n", "--", ...argv], opts);
}
