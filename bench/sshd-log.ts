// Counting on the hosts' side: sshd with LogLevel VERBOSE logs "Connection from" per connection and
// "Starting session" per exec channel, so its log gives connections and remote commands exactly.
import { open, readFile } from "node:fs/promises";

const CONNECTION_LINE = /\bConnection from \d/;
const SESSION_LINE = /\bStarting session: /;

/** Counts connections and sessions in an sshd log, reading only what was appended since. */
export class SshdLogCounter {
  connections = 0;
  sessions = 0;
  private offset = 0;
  private partial = "";

  /**
   * Remote commands: requests in the host's trace (one line per request a long-lived remote shell
   * served) plus the sessions that were not such a shell (a `shell` line in the trace each).
   */
  requests = 0;
  private traced = 0;
  private shells = 0;

  /** `traceFile`: the host's /run/pulumi-hypervisor/trace-requests as the machine sees it. */
  constructor(
    private readonly file: string,
    private readonly traceFile?: string,
  ) {}

  /** Reads the new part of the log; returns the totals so far. Calls are serialized. */
  update(): Promise<Counts> {
    const next = this.queue.then(() => this.readNew());
    this.queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  // Concurrent reads from the same offset would count the same lines twice.
  private queue: Promise<void> = Promise.resolve();

  private async readNew(): Promise<Counts> {
    if (this.traceFile !== undefined) {
      const text = await readFile(this.traceFile, "utf8").catch(() => "");
      const lines = text.split("\n").slice(0, -1);
      this.shells = lines.filter((l) => l.endsWith(" shell")).length;
      this.traced = lines.length - this.shells;
    }
    const fh = await open(this.file, "r");
    try {
      const { size } = await fh.stat();
      if (size > this.offset) {
        const buf = Buffer.alloc(size - this.offset);
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        this.offset += bytesRead;
        const text = this.partial + buf.subarray(0, bytesRead).toString("utf8");
        const lines = text.split("\n");
        this.partial = lines.pop() ?? "";
        for (const line of lines) {
          if (CONNECTION_LINE.test(line)) this.connections++;
          else if (SESSION_LINE.test(line)) this.sessions++;
        }
      }
    } finally {
      await fh.close();
    }
    this.requests = this.traced + this.sessions - this.shells;
    return { connections: this.connections, sessions: this.sessions, requests: this.requests };
  }
}

export interface Counts {
  connections: number;
  sessions: number;
  requests: number;
}

/** Returns where the machine sees a lab host's request trace (through its sshd's root). */
export function traceFileOf(sshdPid: number): string {
  return `/proc/${sshdPid}/root/run/pulumi-hypervisor/trace-requests`;
}
