import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { imaExeCheck } from "../../src/router/ima-exe-check.js";

// The router's IMA check of a caller's executable, on an injected clock: the digest must be one
// IMA measured at that path, and a refused one starts an early epoch, rate-limited.

const FILE = { dev: 1n, ino: 2n, size: 3n, mtimeNs: 4n, ctimeNs: 5n };
const A = "a".repeat(64);
const B = "b".repeat(64);
const peer = (exe: string, exeSha256: string) => ({ pid: 42, exe, file: FILE, exeSha256 });

function setup(measured: Record<string, readonly string[]>) {
  const clock = { ms: 10_000 };
  const refreshes: number[] = [];
  const check = imaExeCheck(
    (path) => (measured[path] ? new Set(measured[path]) : undefined),
    () => refreshes.push(clock.ms),
    () => clock.ms,
  );
  return { check, clock, refreshes };
}

async function refusal(p: Promise<unknown>): Promise<ExecgateError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ExecgateError);
  return e as ExecgateError;
}

describe("imaExeCheck", () => {
  it("a path IMA did not measure: the file's own digest stands alone", async () => {
    const { check, refreshes } = setup({});
    expect(await check(peer("/usr/bin/x", A))).toBeUndefined();
    expect(refreshes).toEqual([]);
  });

  it("a digest IMA measured at that path: accepted as IMA's", async () => {
    const { check } = setup({ "/usr/bin/x": [B, A] });
    expect(await check(peer("/usr/bin/x", A))).toEqual({ algorithm: "sha256", digest: A });
  });

  it("a digest IMA did not measure there: refused (peer_exe_ima_mismatch) and an early epoch started", async () => {
    const { check, refreshes } = setup({ "/usr/bin/x": [B] });
    const e = await refusal(check(peer("/usr/bin/x", A)));
    expect(e.code).toBe("verification_failed");
    expect(e.detail).toMatchObject({ check: "peer_exe_ima_mismatch" });
    expect(refreshes).toEqual([10_000]);
  });

  it("early epochs: at most one a second overall and one a minute for the same file", async () => {
    const { check, clock, refreshes } = setup({ "/usr/bin/x": [B], "/usr/bin/y": [B] });
    await refusal(check(peer("/usr/bin/x", A)));
    clock.ms += 999;
    await refusal(check(peer("/usr/bin/y", A))); // another file, within the second
    clock.ms += 1;
    await refusal(check(peer("/usr/bin/x", A))); // the same file, within the minute
    await refusal(check(peer("/usr/bin/y", A))); // another file, a second later
    clock.ms = 10_000 + 60_000;
    await refusal(check(peer("/usr/bin/x", A))); // the same file, a minute later
    expect(refreshes).toEqual([10_000, 11_000, 70_000]);
  });
});
