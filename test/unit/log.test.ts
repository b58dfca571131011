import { afterEach, describe, expect, it, vi } from "vitest";
import {
  flushLog,
  logInfo,
  logStatus,
  logWarn,
  setLogSink,
  withResourceUrn,
  type LogSink,
} from "../../provider/src/log";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("logInfo", () => {
  it("writes every line of one call in one write, each with the prefix", () => {
    const writes: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    logInfo('bridge "br0" on root@h:22: create br0', 'bridge "br0" on root@h:22: set br0 up');
    logInfo("one");
    logInfo();
    expect(writes).toEqual([
      'pulumi-hypervisor: bridge "br0" on root@h:22: create br0\n' +
        'pulumi-hypervisor: bridge "br0" on root@h:22: set br0 up\n',
      "pulumi-hypervisor: one\n",
    ]);
  });
});

describe("logWarn and logStatus", () => {
  it("send a warning and an ephemeral status of the resource to the sink, and both to stderr", async () => {
    const writes: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    const sent: Array<Parameters<LogSink>> = [];
    const prev = setLogSink((...args) => {
      sent.push(args);
      return Promise.resolve();
    });
    try {
      withResourceUrn("urn:t", () => {
        logWarn("w");
        logStatus("s");
      });
      await flushLog();
    } finally {
      setLogSink(prev);
    }
    expect(sent).toEqual([
      ["warning", "w", "urn:t", false],
      ["info", "s", "urn:t", true],
    ]);
    expect(writes).toEqual(["pulumi-hypervisor: warning: w\n", "pulumi-hypervisor: s\n"]);
  });
});
