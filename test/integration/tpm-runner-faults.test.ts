import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { getRandom } from "../../src/tpm/ops/random.js";
import { TpmRunner } from "../../src/tpm/runner.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";

const execFileAsync = promisify(execFile);

async function failure(p: Promise<unknown>): Promise<ExecgateError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ExecgateError) return e;
    throw e;
  }
  throw new Error("expected a failure");
}

describeTpm("TPM runner faults: every failure is typed, none hangs", () => {
  let tpm: Swtpm;
  beforeAll(async () => {
    tpm = await startSwtpm({ timeoutMs: 1500 });
  });
  afterAll(async () => {
    tpm.resume();
    await tpm?.stop();
  });

  it("serialises concurrent calls and all of them succeed", async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => getRandom(tpm.runner, 16)));
    expect(new Set(all.map((b) => Buffer.from(b).toString("hex"))).size).toBe(6);
  });

  it("a frozen TPM gives hardware_unavailable after the timeout, and recovers when it resumes", async () => {
    tpm.freeze();
    try {
      const e = await failure(getRandom(tpm.runner, 8));
      expect(e.code).toBe("hardware_unavailable");
      expect(e.message).toMatch(/not answering/);
    } finally {
      tpm.resume();
    }
    expect((await getRandom(tpm.runner, 8)).length).toBe(8);
  });

  it("a killed TPM gives hardware_unavailable, and the restarted one answers", async () => {
    await tpm.kill();
    const e = await failure(getRandom(tpm.runner, 8));
    expect(e.code).toBe("hardware_unavailable");
    await tpm.launch();
    expect((await getRandom(tpm.runner, 8)).length).toBe(8);
  });

  it("a TCTI pointing nowhere gives hardware_unavailable", async () => {
    const runner = new TpmRunner({ tcti: `swtpm:path=${tpm.paths.socket}.absent`, timeoutMs: 1500 });
    expect((await failure(getRandom(runner, 8))).code).toBe("hardware_unavailable");
  });

  it("missing tpm2-tools give hardware_unavailable", async () => {
    const runner = new TpmRunner({ tcti: tpm.tcti, toolsDir: "/nonexistent" });
    const e = await failure(getRandom(runner, 8));
    expect(e.code).toBe("hardware_unavailable");
    expect(e.message).toMatch(/tpm2-tools/);
  });

  it("contexts leaked by clients that died mid-command are flushed, and the call that hit them succeeds", async () => {
    // Fill swtpm's session table the way killed tools leave it (no resource manager flushes them).
    const env = { TPM2TOOLS_TCTI: tpm.tcti };
    const dir = await mkdtemp(join(tmpdir(), "execgate-leak-"));
    try {
      let leaked = 0;
      for (; leaked < 100; leaked++) {
        try {
          await execFileAsync("/usr/bin/tpm2_startauthsession", ["-S", join(dir, `s${leaked}.ctx`)], { env });
        } catch {
          break;
        }
      }
      expect(leaked).toBeGreaterThan(0);
      expect(leaked).toBeLessThan(100); // the table is full now
      const r = await tpm.runner.run("tpm2_startauthsession", ["-S", "fresh.ctx"], {
        outputs: ["fresh.ctx"],
      });
      expect(r.files["fresh.ctx"]!.length).toBeGreaterThan(0);
      await tpm.runner.run("tpm2_flushcontext", ["--saved-session"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a TPM error that is not a transport failure is hardware_error with the response code", async () => {
    const e = await failure(tpm.runner.run("tpm2_readpublic", ["-c", "0x81000077", "-o", "x.pub"]));
    expect(e.code).toBe("hardware_error");
    expect(e.detail.rc).toBe(0x18b);
  });
});
