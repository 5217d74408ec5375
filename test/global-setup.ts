import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reapRecorded } from "../src/dev/swtpm.js";

/**
 * One scratch directory per test run. Every swtpm a test starts records its PID under
 * `<run>/pids`; teardown kills any that a failed or crashed test left running.
 */
export async function setup(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "execgate-test-"));
  process.env.EXECGATE_TEST_RUN_DIR = dir;
}

export async function teardown(): Promise<void> {
  const dir = process.env.EXECGATE_TEST_RUN_DIR;
  if (!dir) return;
  const leaked = await reapRecorded(join(dir, "pids"));
  if (leaked > 0) process.stderr.write(`global teardown: stopped ${leaked} leaked swtpm process(es)\n`);
  await rm(dir, { recursive: true, force: true });
}
