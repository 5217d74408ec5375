import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseProcStat } from "../../src/peer/proc-parse.js";
import { execOutside, HELPER_TITLE, helperPid } from "../../src/tpm/spawner.js";

const opts = { cwd: tmpdir(), env: { LC_ALL: "C" }, timeoutMs: 5000, maxBuffer: 1 << 20 };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Gone: no such process, or a zombie (dead; waiting for its parent, or an adopter, to reap it). */
function gone(pid: number): boolean {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8")).state === "Z";
  } catch {
    return true;
  }
}

/** A shell command that prints the state of process `pid` ("gone" when there is none). */
const stateOf = (pid: number) =>
  `s=$(cat /proc/${pid}/stat 2>/dev/null) && echo "\${s##*) }" | cut -c1 || echo gone`;

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

  it("the helper shows a readable name in ps, not node -e and its script", async () => {
    await execOutside("/bin/true", [], opts);
    const pid = helperPid()!;
    const ps = spawnSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8" });
    expect(ps.stdout.trim()).toBe(HELPER_TITLE);
    expect(readFileSync(`/proc/${pid}/cmdline`, "latin1")).not.toContain("require(");
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

  it("a call that times out is answered once its tool is gone, with what the tool started; the next call runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "execgate-spawner-"));
    try {
      // A tool that hangs, and whose own child holds its output pipes (a kill of the tool alone
      // left the child running and the call was answered while it ran).
      const script = `echo $$ > ${dir}/tool.pid; sleep 30 & echo $! > ${dir}/child.pid; wait`;
      const r = await execOutside("/bin/sh", ["-c", script], { ...opts, timeoutMs: 1000 });
      expect(r.error).toMatchObject({ killed: true, signal: "SIGKILL" });
      const tool = Number(readFileSync(join(dir, "tool.pid"), "utf8"));
      const child = Number(readFileSync(join(dir, "child.pid"), "utf8"));
      expect(gone(tool)).toBe(true);
      await until(() => gone(child));
      const next = await execOutside("/bin/sh", ["-c", stateOf(tool)], opts);
      expect(next.stdout).toBe("gone\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a helper that stops answering is replaced: its tool is killed, the call fails, the next call runs on a new helper once that tool is gone", async () => {
    await execOutside("/bin/true", [], opts);
    const stuck = helperPid()!;
    const dir = mkdtempSync(join(tmpdir(), "execgate-spawner-"));
    const toolPidFile = join(dir, "tool.pid");
    try {
      const call = execOutside("/bin/sh", ["-c", `echo $$ > ${toolPidFile}; exec sleep 30`], {
        ...opts,
        timeoutMs: 1500,
        answerGraceMs: 0,
      });
      await until(() => existsSync(toolPidFile) && readFileSync(toolPidFile, "utf8").endsWith("\n"));
      const tool = Number(readFileSync(toolPidFile, "utf8"));
      // Alive but stuck: it neither kills its tool at the timeout nor answers.
      process.kill(stuck, "SIGSTOP");
      await expect(call).rejects.toMatchObject({ code: "hardware_unavailable" });
      const next = await execOutside("/bin/sh", ["-c", stateOf(tool)], opts);
      expect(["gone\n", "Z\n"]).toContain(next.stdout);
      expect(helperPid()).not.toBe(stuck);
      await until(() => !alive(stuck));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
