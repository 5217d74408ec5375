import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { execOutside, helperPid } from "../../src/tpm/spawner.js";

const opts = { cwd: tmpdir(), env: { LC_ALL: "C" }, timeoutMs: 5000, maxBuffer: 1 << 20 };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("execOutside (tpm2-tools are spawned from a helper process, not the daemon)", () => {
  it("returns the child's stdout and stderr, from a process other than this one", async () => {
    const r = await execOutside("/bin/sh", ["-c", "printf out; echo err >&2; echo $PPID >&2"], opts);
    const [err, ppid] = r.stderr.split("\n");
    expect(r.stdout).toBe("out");
    expect(err).toBe("err");
    expect(Number(ppid)).toBe(helperPid());
    expect(helperPid()).not.toBe(process.pid);
  });

  it("serves concurrent calls, each with its own result", async () => {
    const rs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => execOutside("/bin/echo", [`call-${i}`], opts)),
    );
    expect(rs.map((r) => r.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `call-${i}\n`));
  });

  it("passes only the given environment", async () => {
    const r = await execOutside("/usr/bin/env", [], { ...opts, env: { ONLY: "this" } });
    expect(r.stdout).toBe("ONLY=this\n");
  });

  it("reports a missing program, a non-zero exit and a timeout with the fields classifyFailure reads", async () => {
    const missing = await execOutside("/nonexistent/tpm2_quote", [], opts);
    expect(missing.error?.code).toBe("ENOENT");
    const failed = await execOutside("/bin/sh", ["-c", "echo bad >&2; exit 3"], opts);
    expect(failed.error?.code).toBe(3);
    expect(failed.stderr).toBe("bad\n");
    const slow = await execOutside("/bin/sleep", ["5"], { ...opts, timeoutMs: 100 });
    expect(slow.error?.killed).toBe(true);
    expect(slow.error?.signal).toBe("SIGKILL");
  });

  it("ignores the stop signals a terminal or systemd sends the whole group", async () => {
    await execOutside("/bin/true", [], opts);
    const pid = helperPid()!;
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.kill(pid, s);
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid)).toBe(true);
    expect((await execOutside("/bin/echo", ["still"], opts)).stdout).toBe("still\n");
    expect(helperPid()).toBe(pid);
  });

  it("fails the calls in flight when the helper dies (hardware_unavailable), and the next call starts a new one", async () => {
    await execOutside("/bin/true", [], opts);
    const pid = helperPid()!;
    const inFlight = execOutside("/bin/sleep", ["3"], opts);
    process.kill(pid, "SIGKILL");
    await expect(inFlight).rejects.toMatchObject({ code: "hardware_unavailable" });
    expect((await execOutside("/bin/echo", ["again"], opts)).stdout).toBe("again\n");
    expect(helperPid()).not.toBe(pid);
  });

  it("exits with the process that started it, killing the tool it runs", async () => {
    // A separate node process (the built module, as the daemon runs it) starts a helper running
    // a long tool, prints the helper's pid and exits without waiting.
    const dir = mkdtempSync(join(tmpdir(), "execgate-spawner-"));
    const toolPidFile = join(dir, "tool.pid");
    const script = `
      import { execOutside, helperPid } from ${JSON.stringify(resolve("dist/src/tpm/spawner.js"))};
      execOutside("/bin/sh", ["-c", "echo $$ > ${toolPidFile}; exec sleep 30"], ${JSON.stringify(opts)}).catch(() => {});
      const { existsSync } = await import("node:fs");
      for (let i = 0; i < 1000 && !existsSync(${JSON.stringify(toolPidFile)}); i++)
        await new Promise((r) => setTimeout(r, 10));
      console.log(helperPid());
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const helper = Number(r.stdout.trim());
    const tool = Number(readFileSync(toolPidFile, "utf8").trim());
    expect(helper).toBeGreaterThan(0);
    expect(tool).toBeGreaterThan(0);
    await until(() => !alive(helper) && !alive(tool));
    rmSync(dir, { recursive: true, force: true });
  });
});
