import type { Client, ClientChannel } from "ssh2";
import { reasonOf, StaleConnectionError, TunnelError } from "../errors";
import { sshCounters } from "./ssh-stats";

// Channels on one pooled connection: how many may be open at once, and one command's exec with
// its stdin and collected output.

/** Channels used at once on one connection; sshd's default MaxSessions is 10. */
export const MAX_CHANNELS_PER_CONNECTION = 8;

/** How a command's channel ended. */
export interface Outcome {
  readonly code: number | undefined;
  readonly signal: string | undefined;
  readonly stdout: string;
  readonly stderr: string;
  readonly streamError: string | undefined;
}

/** A command's open channel and how it will end. */
export interface Running {
  readonly channel: ClientChannel;
  /** Settles when the channel closes; never rejects. */
  readonly outcome: Promise<Outcome>;
}

/**
 * A counting semaphore: at most `limit` holders, a freed slot passing to the oldest waiter. The
 * limit starts at MAX_CHANNELS_PER_CONNECTION and only goes down, to what the server accepted
 * when it refused a channel (`refused`): sshd frees a closed session a moment after the client
 * sees it closed, so under load it refuses opens below its MaxSessions too, and a lower limit
 * stops that instead of retrying into it again and again.
 */
export class ChannelLimit {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private limit = MAX_CHANNELS_PER_CONNECTION) {}

  /** Returns whether a slot is held or awaited. */
  get busy(): boolean {
    return this.active > 0 || this.waiters.length > 0;
  }

  /** Returns how many slots may be held at once now. */
  get current(): number {
    return this.limit;
  }

  /** Returns how many slots are held. */
  get held(): number {
    return this.active;
  }

  /** Returns whether someone waits for a slot. */
  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  /** Takes a slot when one is free now and nobody waits; returns whether it did. */
  tryAcquire(): boolean {
    if (this.active >= this.limit || this.waiters.length > 0) return false;
    this.active++;
    return true;
  }

  /** Returns once a slot is held. */
  acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Lowers the limit to the slots held besides the refused one's (at least 1), when that is lower;
   * returns the new limit, or undefined when it did not change. The caller still holds its slot.
   * `unopened`: the slots of channels not open yet, the refused one's included, which the server
   * has not accepted either.
   */
  refused(unopened = 1): number | undefined {
    const accepted = Math.max(1, this.active - unopened);
    if (accepted >= this.limit) return undefined;
    this.limit = accepted;
    return accepted;
  }

  /** Returns whether the connection is now unused (no slot held or awaited). */
  release(): boolean {
    this.active--;
    while (this.active < this.limit && this.waiters.length > 0) {
      this.active++;
      this.waiters.shift()?.(); // the slot passes to the oldest waiter
    }
    return !this.busy;
  }
}

/** What goes to a command's stdin: written at once, or in answer to what it prints on stderr. */
export interface StdinFeed {
  /** Runs once the channel is open, before any of its output is handled. */
  open(sink: StdinSink): void;
  /** Runs with each piece of stderr, in order (only while the feed still has something to send). */
  stderr?(text: string, sink: StdinSink): void;
  /** Returns the stderr the caller sees (a feed removes what it asked the command to print). */
  cleanStderr?(stderr: string): string;
}

/** The writing end of a channel's stdin. */
export interface StdinSink {
  write(chunk: Buffer): void;
  end(): void;
}

/** Returns a feed that writes the chunks and closes stdin as soon as the channel opens. */
export function writeAllFeed(chunks: readonly Buffer[]): StdinFeed {
  return {
    open(sink) {
      for (const chunk of chunks) sink.write(chunk);
      sink.end();
    },
  };
}

// Listens before returning: ssh2 can parse the exec reply, the output, the exit status and the
// close from one read, so a listener attached after an await would miss the exit status.
function watchChannel(
  channel: ClientChannel,
  feed: StdinFeed,
  onStdout?: (chunk: Buffer) => void,
): Running {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let code: number | undefined;
  let signal: string | undefined;
  let streamError: string | undefined;
  const sink: StdinSink = {
    write: (chunk) => {
      channel.write(chunk);
    },
    end: () => {
      channel.end();
    },
  };
  channel.on("data", onStdout ?? ((chunk: Buffer) => out.push(chunk)));
  channel.stderr.on("data", (chunk: Buffer) => {
    err.push(chunk);
    feed.stderr?.(chunk.toString("utf8"), sink);
  });
  channel.on("exit", (status: number | null, name?: string) => {
    if (typeof status === "number") code = status;
    else if (name) signal = name;
  });
  channel.on("error", (e: unknown) => {
    streamError ??= reasonOf(e);
  });
  channel.stderr.on("error", (e: unknown) => {
    streamError ??= reasonOf(e);
  });
  const outcome = new Promise<Outcome>((resolve) => {
    channel.once("close", () => {
      const stderr = Buffer.concat(err).toString("utf8");
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: feed.cleanStderr ? feed.cleanStderr(stderr) : stderr,
        streamError,
      });
    });
  });
  feed.open(sink);
  return { channel, outcome };
}

/**
 * Returns the running command, its stdin fed by `feed`; rejects with StaleConnectionError when
 * nothing could be sent. With `onStdout` its stdout goes there as it comes instead of into the
 * outcome (a long-lived remote shell).
 */
export function openExec(
  client: Client,
  command: string,
  feed: StdinFeed,
  onStdout?: (chunk: Buffer) => void,
): Promise<Running> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, channel) => {
        if (err) {
          reject(err);
          return;
        }
        sshCounters.channelsOpened++;
        resolve(watchChannel(channel, feed, onStdout));
      });
    } catch (err) {
      reject(new StaleConnectionError(reasonOf(err)));
    }
  });
}

/**
 * Returns a tunnel to host:port through the client; rejects with TunnelError. `onClose` runs
 * when the tunnel closes (attached at once: it may close within the same read).
 */
export function openForwardChannel(
  client: Client,
  host: string,
  port: number,
  onClose: () => void,
): Promise<ClientChannel> {
  return new Promise<ClientChannel>((resolve, reject) => {
    try {
      client.forwardOut("127.0.0.1", 0, host, port, (err, channel) => {
        if (err) {
          reject(new TunnelError(reasonOf(err)));
          return;
        }
        sshCounters.channelsOpened++;
        channel.once("close", onClose);
        resolve(channel);
      });
    } catch (err) {
      reject(new TunnelError(reasonOf(err)));
    }
  });
}
