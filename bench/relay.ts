// A TCP relay that adds latency: every chunk is passed on `delayMs` after it arrived, in each
// direction, in order. Point a connection's host/port at the relay to put a WAN-like round trip
// (2 x delayMs) between the controller and a lab host; the SSH host key is still the lab host's.
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

// Passes `from`'s bytes and its end to `to`, each delayMs later; timers of equal delay fire in
// the order they were set, so the stream stays in order.
function pipeDelayed(
  from: net.Socket,
  to: net.Socket,
  delayMs: number,
  count: (bytes: number) => void,
): void {
  const later = (f: () => void): void => {
    if (delayMs <= 0) f();
    else setTimeout(f, delayMs);
  };
  from.on("data", (chunk: Buffer) => {
    count(chunk.length);
    later(() => to.destroyed || to.write(chunk));
  });
  from.on("end", () => later(() => to.destroyed || to.end()));
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
    client.on("close", () => setTimeout(() => upstream.destroy(), opts.delayMs + 1));
    upstream.on("close", () => setTimeout(() => client.destroy(), opts.delayMs + 1));
    pipeDelayed(client, upstream, opts.delayMs, (n) => (bytes.toTarget += n));
    pipeDelayed(upstream, client, opts.delayMs, (n) => (bytes.fromTarget += n));
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
