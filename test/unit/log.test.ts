import { afterEach, describe, expect, it, vi } from "vitest";
import { logInfo } from "../../provider/src/log";

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
