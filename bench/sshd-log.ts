// Counting on the hosts' side: sshd with LogLevel VERBOSE logs "Connection from" per connection and
// "Starting session" per exec channel, so its log gives connections and remote commands exactly.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { LabHost } from "../lab";

const CONNECTION_LINE = /\bConnection from \d/;
const SESSION_LINE = /\bStarting session: /;

// The lines appended to a file since the last call, read with synchronous calls on a descriptor
// kept open: a count runs before and after every operation of a serial run, on the chain it
// measures, so it must cost that chain next to nothing (an fstat and a read; no thread-pool hops,
// no path lookup through /proc/PID/root, no re-reading).
class AppendedLines {
  private fd: number | undefined;
  private offset = 0;
  private partial = "";

  constructor(private readonly file: string) {}

  /** Complete lines appended since the last call ([] while the file does not exist). */
  next(): string[] {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.file, "r");
      } catch {
        return [];
      }
    }
    const size = fstatSync(this.fd).size;
    if (size <= this.offset) return [];
    const buf = Buffer.alloc(size - this.offset);
    const bytesRead = readSync(this.fd, buf, 0, buf.length, this.offset);
    this.offset += bytesRead;
    const lines = (this.partial + buf.subarray(0, bytesRead).toString("utf8")).split("\n");
    this.partial = lines.pop() ?? "";
    return lines;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Counts connections and sessions in an sshd log, reading only what was appended since. */
export class SshdLogCounter {
  connections = 0;
  sessions = 0;
  private readonly log: AppendedLines;
  private readonly trace: AppendedLines | undefined;

  /**
   * Remote commands: requests in the host's trace (one line per request a long-lived remote shell
   * served) plus the sessions that were not such a shell (a `shell` line in the trace each).
   */
  requests = 0;
  private traced = 0;
  private shells = 0;

  /** `traceFile`: the host's /run/pulumi-hypervisor/trace-requests as the machine sees it. */
  constructor(file: string, traceFile?: string) {
    this.log = new AppendedLines(file);
    this.trace = traceFile === undefined ? undefined : new AppendedLines(traceFile);
  }

  /** Reads the new part of the log and the trace; returns the totals so far. */
  update(): Counts {
    for (const line of this.trace?.next() ?? []) {
      if (line.endsWith(" shell")) this.shells++;
      else this.traced++;
    }
    for (const line of this.log.next()) {
      if (CONNECTION_LINE.test(line)) this.connections++;
      else if (SESSION_LINE.test(line)) this.sessions++;
    }
    this.requests = this.traced + this.sessions - this.shells;
    return { connections: this.connections, sessions: this.sessions, requests: this.requests };
  }

  /** Closes the files; a later update opens them again and reads from where this one stopped. */
  close(): void {
    this.log.close();
    this.trace?.close();
  }
}

export interface Counts {
  connections: number;
  sessions: number;
  requests: number;
}

/** Empties a lab host's request trace, creating it: the remote shells append to it when it exists. */
export async function startRequestTrace(h: LabHost): Promise<void> {
  const made = await h.exec([
    "sh",
    "-c",
    "mkdir -p /run/pulumi-hypervisor && : > /run/pulumi-hypervisor/trace-requests",
  ]);
  if (made.code !== 0) throw new Error(`${h.name}: no request trace: ${made.stderr}`);
}

/** Returns where the machine sees a lab host's request trace (through its sshd's root). */
export function traceFileOf(sshdPid: number): string {
  return `/proc/${sshdPid}/root/run/pulumi-hypervisor/trace-requests`;
}
