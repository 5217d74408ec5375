import { describe, expect, it } from "vitest";
import { singleFlight } from "../../daemon/start/single-flight.js";

// The daemon's export runs one at a time: concurrent requests share the export in progress.

/** A call whose settling the test controls. */
function controlled<T>() {
  let resolve: (v: T) => void = () => undefined;
  let reject: (e: unknown) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("singleFlight", () => {
  it("calls during one in progress share it; a call after it settled starts another", async () => {
    const calls: ReturnType<typeof controlled<string>>[] = [];
    const once = singleFlight(() => {
      const c = controlled<string>();
      calls.push(c);
      return c.promise;
    });
    const a = once();
    const b = once();
    expect(calls).toHaveLength(1);
    calls[0]!.resolve("first");
    expect(await a).toBe("first");
    expect(await b).toBe("first");
    const c = once();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve("second");
    expect(await c).toBe("second");
  });

  it("a failure reaches every caller sharing it, and the next call runs again", async () => {
    let n = 0;
    const pending = controlled<number>();
    const once = singleFlight(() => {
      n++;
      return n === 1 ? pending.promise : Promise.resolve(n);
    });
    const a = once();
    const b = once();
    pending.reject(new Error("disk full"));
    await expect(a).rejects.toThrow("disk full");
    await expect(b).rejects.toThrow("disk full");
    expect(await once()).toBe(2);
  });
});
