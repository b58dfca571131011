// A TCP relay that adds latency: every chunk is passed on `delayMs` after it arrived, in each
// direction, in order. With `bandwidthMbit` each direction is also a link of that rate, shared by
// the relay's connections: a chunk leaves once the chunks before it have crossed, at that rate.
// Point a connection's host/port at the relay to put a WAN-like round trip (2 x delayMs) between
// the controller and a lab host; the SSH host key is still the lab host's.
import * as net from "node:net";

export interface RelayOptions {
  /** Where the relay listens: 127.0.0.1 (default) or a 198.18.x controller address. */
  listenHost?: string;
  /** 0 (default) picks a free port. */
  listenPort?: number;
  targetHost: string;
  targetPort: number;
  /** Added to each direction; a round trip gains 2 x delayMs. */
  delayMs: number;
  /** Each direction's rate in megabits per second (undefined: as fast as loopback). */
  bandwidthMbit?: number;
}

export interface Relay {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: () => number;
  /** Bytes taken in so far to pass on toward the target, and back from it. */
  readonly bytes: () => RelayBytes;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

export interface RelayBytes {
  toTarget: number;
  fromTarget: number;
}

/** What the relays have taken in so far, each way, all together; undefined without relays. */
export function relaysBytes(relays: Iterable<Relay>): RelayBytes | undefined {
  let sum: RelayBytes | undefined;
  for (const r of relays) {
    const b = r.bytes();
    sum = {
      toTarget: (sum?.toTarget ?? 0) + b.toTarget,
      fromTarget: (sum?.fromTarget ?? 0) + b.fromTarget,
    };
  }
  return sum;
}

const ALLOWED_LISTEN = /^(127\.0\.0\.1|198\.1[89]\.\d{1,3}\.\d{1,3})$/;

/** One direction of a link of limited rate: when the bytes taken so far will have crossed it. */
export class LinkRate {
  private freeAt = 0;

  constructor(private readonly bitsPerMs: number) {}

  /** Returns the ms from `now` until `bytes` sent now have crossed, after those before them. */
  crossingMs(bytes: number, now: number): number {
    this.freeAt = Math.max(this.freeAt, now) + (bytes * 8) / this.bitsPerMs;
    return this.freeAt - now;
  }
}

// Passes `from`'s bytes and its end to `to`, each delayMs later (and once the link's rate lets
// them cross). One queue in arrival order and one timer for its head: the stream stays in order
// whatever the timers' rounding. Returns a call that runs `then` once nothing waits to be passed
// on (at once when nothing does).
function pipeDelayed(
  from: net.Socket,
  to: net.Socket,
  delayMs: number,
  count: (bytes: number) => void,
  rate: LinkRate | undefined,
): (then: () => void) => void {
  const queue: Array<{ at: number; pass: () => void }> = [];
  const drained: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  const flush = (): void => {
    timer = undefined;
    const now = performance.now();
    let head = queue[0];
    for (; head !== undefined && head.at <= now; head = queue[0]) {
      queue.shift();
      head.pass();
    }
    if (head) timer = setTimeout(flush, Math.max(1, Math.ceil(head.at - now)));
    else for (const then of drained.splice(0)) then();
  };
  const later = (bytes: number, pass: () => void): void => {
    const now = performance.now();
    last = Math.max(last, now + delayMs + (rate ? rate.crossingMs(bytes, now) : 0));
    if (delayMs <= 0 && rate === undefined && queue.length === 0) return pass();
    queue.push({ at: last, pass });
    if (timer === undefined) timer = setTimeout(flush, Math.max(1, Math.ceil(last - now)));
  };
  from.on("data", (chunk: Buffer) => {
    count(chunk.length);
    later(chunk.length, () => to.destroyed || to.write(chunk));
  });
  from.on("end", () => later(0, () => to.destroyed || to.end()));
  return (then) => (queue.length === 0 ? then() : drained.push(then));
}

/** Returns a listening relay to targetHost:targetPort that delays each direction by delayMs. */
export function startRelay(opts: RelayOptions): Promise<Relay> {
  const listenHost = opts.listenHost ?? "127.0.0.1";
  if (!ALLOWED_LISTEN.test(listenHost)) {
    return Promise.reject(
      new Error(
        `relay: listenHost must be 127.0.0.1 or a 198.18.0.0/15 address, not ${listenHost}`,
      ),
    );
  }
  if (!Number.isFinite(opts.delayMs) || opts.delayMs < 0) {
    return Promise.reject(new Error(`relay: delayMs must be >= 0, not ${opts.delayMs}`));
  }
  const mbit = opts.bandwidthMbit;
  if (mbit !== undefined && !(Number.isFinite(mbit) && mbit > 0)) {
    return Promise.reject(new Error(`relay: bandwidthMbit must be > 0, not ${mbit}`));
  }
  // one link per relay, each way: its connections share the rate, as a host's one line would
  const toRate = mbit !== undefined ? new LinkRate(mbit * 1000) : undefined;
  const fromRate = mbit !== undefined ? new LinkRate(mbit * 1000) : undefined;
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const bytes: RelayBytes = { toTarget: 0, fromTarget: 0 };
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect({ host: opts.targetHost, port: opts.targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on("close", () => sockets.delete(s));
    }
    // An error or close on one side ends the other once the delayed bytes before it are out.
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    const up = pipeDelayed(client, upstream, opts.delayMs, (n) => (bytes.toTarget += n), toRate);
    const down = pipeDelayed(
      upstream,
      client,
      opts.delayMs,
      (n) => (bytes.fromTarget += n),
      fromRate,
    );
    // A close crosses the link as the bytes do (delayMs), and goes once the bytes still on their
    // way to that side are passed on: a side whose end was passed on goes when its writes are out
    // (a destroy would drop those still buffered), else at once.
    const closeLater = (s: net.Socket, whenDrained: (then: () => void) => void): void => {
      const close = (): void => {
        if (s.writableEnded && !s.writableFinished && !s.destroyed) {
          s.once("finish", () => s.destroy());
        } else s.destroy();
      };
      setTimeout(() => whenDrained(close), opts.delayMs);
    };
    client.on("close", () => closeLater(upstream, up));
    upstream.on("close", () => closeLater(client, down));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.listenPort ?? 0, listenHost, () => {
      const address = server.address() as net.AddressInfo;
      resolve({
        host: listenHost,
        port: address.port,
        accepted: () => accepted,
        bytes: () => ({ ...bytes }),
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
