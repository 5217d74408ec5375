import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reapRecorded } from "../src/dev/swtpm.js";

/**
 * One scratch directory per test run. Every swtpm a test starts records its PID under
 * `<run>/pids`; teardown kills any that a failed or crashed test left running, and then any
 * process whose command line names the run directory (daemons, `dev up`, their swtpms), so no
 * process outlives the run even when a test fails.
 */
export async function setup(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "execgate-test-"));
  process.env.EXECGATE_TEST_RUN_DIR = dir;
}

async function reapByCommandLine(marker: string): Promise<number> {
  let n = 0;
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(marker)) continue;
    try {
      process.kill(pid, "SIGKILL");
      process.stderr.write(
        `global teardown: killed leaked ${pid}: ${cmdline.replaceAll("\0", " ").slice(0, 160)}\n`,
      );
      n++;
    } catch {
      // gone already
    }
  }
  return n;
}

export async function teardown(): Promise<void> {
  const dir = process.env.EXECGATE_TEST_RUN_DIR;
  if (!dir) return;
  const leaked = (await reapRecorded(join(dir, "pids"))) + (await reapByCommandLine(dir));
  if (leaked > 0) process.stderr.write(`global teardown: stopped ${leaked} leaked process(es)\n`);
  await rm(dir, { recursive: true, force: true });
}
