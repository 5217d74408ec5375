import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { execOnThread } from "../../src/tpm/exec-thread.js";

const opts = { cwd: tmpdir(), env: { LC_ALL: "C" }, timeoutMs: 5000, maxBuffer: 1 << 20 };

describe("execOnThread (tpm2-tools are spawned off the event loop)", () => {
  it("returns the child's stdout and stderr", async () => {
    const r = await execOnThread("/bin/sh", ["-c", "printf out; printf err >&2"], opts);
    expect(r).toEqual({ stdout: "out", stderr: "err" });
  });

  it("serves concurrent calls, each with its own result", async () => {
    const rs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => execOnThread("/bin/echo", [`call-${i}`], opts)),
    );
    expect(rs.map((r) => r.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `call-${i}\n`));
  });

  it("passes only the given environment", async () => {
    const r = await execOnThread("/usr/bin/env", [], { ...opts, env: { ONLY: "this" } });
    expect(r.stdout).toBe("ONLY=this\n");
  });

  it("reports a missing program, a non-zero exit and a timeout with the fields classifyFailure reads", async () => {
    const missing = await execOnThread("/nonexistent/tpm2_quote", [], opts);
    expect(missing.error?.code).toBe("ENOENT");
    const failed = await execOnThread("/bin/sh", ["-c", "echo bad >&2; exit 3"], opts);
    expect(failed.error?.code).toBe(3);
    expect(failed.stderr).toBe("bad\n");
    const slow = await execOnThread("/bin/sleep", ["5"], { ...opts, timeoutMs: 100 });
    expect(slow.error?.killed).toBe(true);
    expect(slow.error?.signal).toBe("SIGKILL");
  });
});
