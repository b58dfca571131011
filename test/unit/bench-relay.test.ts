import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { LinkRate, startRelay, type Relay } from "../../bench/relay";

// The bench's relay on loopback: a target that collects what arrives, a client that writes
// through the relay in many small writes.

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function collector(): Promise<{ port: number; received: () => Promise<Buffer> }> {
  let done!: (b: Buffer) => void;
  const got = new Promise<Buffer>((resolve) => (done = resolve));
  const server = net.createServer((s) => {
    const parts: Buffer[] = [];
    s.on("data", (c: Buffer) => parts.push(c));
    s.on("end", () => {
      done(Buffer.concat(parts));
      s.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as net.AddressInfo).port, received: () => got };
}

// Writes `data` through the relay in 1,000-byte writes and ends; returns the ms until the target
// had all of it, and what it had.
async function through(relay: Relay, target: { received: () => Promise<Buffer> }, data: Buffer) {
  const t0 = performance.now();
  const sock = net.connect({ host: relay.host, port: relay.port });
  await new Promise<void>((resolve) => sock.once("connect", resolve));
  for (let i = 0; i < data.length; i += 1000) sock.write(data.subarray(i, i + 1000));
  sock.end();
  const got = await target.received();
  sock.destroy();
  return { ms: performance.now() - t0, got };
}

describe("bench relay", () => {
  it("LinkRate queues bytes behind those before them at the link's rate", () => {
    const r = new LinkRate(8); // 8 bits per ms: a byte a ms
    expect(r.crossingMs(100, 0)).toBe(100);
    // sent at 50 ms, behind the first 100 bytes: crosses at 110, 60 ms later
    expect(r.crossingMs(10, 50)).toBe(60);
    // the link was idle from 110 to 500
    expect(r.crossingMs(5, 500)).toBe(5);
  });

  it("passes every byte in order, delayed, and no faster than its bandwidth", async () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) % 256));
    const target = await collector();
    // 8 Mbit/s: 200 KB take 200 ms to cross
    const relay = await startRelay({
      targetHost: "127.0.0.1",
      targetPort: target.port,
      delayMs: 5,
      bandwidthMbit: 8,
    });
    closers.push(() => relay.close());
    const { ms, got } = await through(relay, target, data);
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(200);
    expect(relay.bytes().toTarget).toBe(data.length);
  });

  it("refuses a bandwidth that is not a positive number", async () => {
    for (const bandwidthMbit of [0, -1, Number.NaN]) {
      await expect(
        startRelay({ targetHost: "127.0.0.1", targetPort: 1, delayMs: 0, bandwidthMbit }),
      ).rejects.toThrow(/bandwidthMbit must be > 0/);
    }
  });
});
