import { once } from "node:events";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coalesceWrites } from "../../provider/src/host/dial";

let server: Server;
let port: number;
const received: Promise<string>[] = [];

beforeAll(async () => {
  server = createServer((s) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    received.push(once(s, "end").then(() => Buffer.concat(chunks).toString("utf8")));
    s.resume();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  port = addr.port;
});

afterAll(async () => {
  server.close();
  await once(server, "close");
});

// Counts the system-call level writes of the socket: one _write or one _writev each.
function counted(sock: Socket): { writes: number[] } {
  const seen = { writes: [] as number[] };
  const single = sock._write.bind(sock);
  const vector = sock._writev?.bind(sock);
  sock._write = (chunk, enc, cb) => {
    seen.writes.push(1);
    single(chunk, enc, cb);
  };
  if (vector) {
    sock._writev = (chunks, cb) => {
      seen.writes.push(chunks.length);
      vector(chunks, cb);
    };
  }
  return seen;
}

describe("coalesceWrites", () => {
  it("sends the writes of one event-loop turn in one vectored write, in order", async () => {
    const sock = coalesceWrites(createConnection({ host: "127.0.0.1", port }));
    await once(sock, "connect");
    const seen = counted(sock);
    sock.write("a");
    sock.write(Buffer.from("b"));
    sock.write("c");
    await new Promise((r) => setImmediate(r));
    sock.write("d");
    await new Promise((r) => setImmediate(r));
    sock.write("e");
    sock.end("f");
    await once(sock, "close");
    expect(seen.writes).toEqual([3, 1, 2]);
    expect(await received.at(-1)).toBe("abcdef");
  });

  it("also joins writes made by promise continuations of the same turn", async () => {
    const sock = coalesceWrites(createConnection({ host: "127.0.0.1", port }));
    await once(sock, "connect");
    const seen = counted(sock);
    sock.write("reply-ack\n");
    await Promise.resolve();
    await Promise.resolve();
    sock.write("next-request\n");
    await new Promise((r) => setImmediate(r));
    sock.end();
    await once(sock, "close");
    expect(seen.writes).toEqual([2]);
    expect(await received.at(-1)).toBe("reply-ack\nnext-request\n");
  });

  it("reports the write's own return value and callback", async () => {
    const sock = coalesceWrites(createConnection({ host: "127.0.0.1", port }));
    await once(sock, "connect");
    let called = false;
    expect(sock.write("x", () => (called = true))).toBe(true);
    sock.end();
    await once(sock, "close");
    expect(called).toBe(true);
    expect(await received.at(-1)).toBe("x");
  });
});
