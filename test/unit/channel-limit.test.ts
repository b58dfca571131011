// The per-connection channel limit: a semaphore whose limit learns from the server's refusals.
import { describe, expect, it } from "vitest";
import { ChannelLimit, MAX_CHANNELS_PER_CONNECTION } from "../../provider/src/host/channels";

describe("ChannelLimit", () => {
  it("hands a freed slot to the oldest waiter and reports when the connection is unused", async () => {
    const limit = new ChannelLimit(2);
    await limit.acquire();
    await limit.acquire();
    const order: number[] = [];
    const w1 = limit.acquire().then(() => order.push(1));
    const w2 = limit.acquire().then(() => order.push(2));
    expect(limit.release()).toBe(false);
    await w1;
    expect(order).toEqual([1]);
    expect(limit.release()).toBe(false);
    await w2;
    expect(order).toEqual([1, 2]);
    expect(limit.release()).toBe(false);
    expect(limit.release()).toBe(true);
    expect(limit.busy).toBe(false);
  });

  it("lowers the limit to the channels the server accepted when it refuses one, never below 1", async () => {
    const limit = new ChannelLimit();
    expect(limit.current).toBe(MAX_CHANNELS_PER_CONNECTION);
    for (let i = 0; i < 6; i++) await limit.acquire();
    // The sixth holder's open was refused: the server took five.
    expect(limit.refused()).toBe(5);
    expect(limit.refused()).toBeUndefined();
    limit.release();
    let got = false;
    const waiting = limit.acquire().then(() => (got = true));
    await Promise.resolve();
    expect(got).toBe(false);
    limit.release();
    await waiting;
    expect(got).toBe(true);
    for (let i = 0; i < 5; i++) limit.release();
    await limit.acquire();
    expect(limit.refused()).toBe(1);
    expect(limit.current).toBe(1);
  });

  it("lets no more than the lowered limit hold slots after releases", async () => {
    const limit = new ChannelLimit(4);
    for (let i = 0; i < 4; i++) await limit.acquire();
    expect(limit.refused()).toBe(3);
    let held = 4;
    const waiters = Array.from({ length: 3 }, () => limit.acquire().then(() => held++));
    limit.release();
    held--;
    limit.release();
    held--;
    await Promise.resolve();
    await Promise.resolve();
    // Two released from four: two held, so one waiter gets a slot (limit 3), not two.
    expect(held).toBe(3);
    limit.release();
    held--;
    limit.release();
    held--;
    await Promise.all(waiters);
    expect(held).toBe(3);
  });
});
