import { join } from "node:path";
import { runChaos } from "../chaos/chaos.js";
import type { BenchRow, BenchSuite } from "./types.js";

/**
 * The chaos run (scripts/chaos.sh) as a bench suite: 50 kill -9 cycles under load (10 with
 * BENCH_QUICK=1), `audit verify` after every restart and at the end. Its figures are counts, not
 * speeds: the target is that nothing acknowledged is lost and every verify passes.
 */
export const suite: BenchSuite = {
  name: "chaos",
  async run(ctx) {
    const clients = 8;
    const depth = 4;
    const r = await runChaos({
      dir: join(ctx.dir, "chaos"),
      cycles: ctx.quick ? 10 : 50,
      clients,
      depth,
      minLoadMs: 150,
      maxLoadMs: 1000,
      seed: Math.floor(Math.random() * 2 ** 31),
      verifyEach: true,
      log: ctx.log,
    });
    const problems = [
      ...r.unexpected,
      ...r.verify.failures.slice(0, 3),
      ...(r.verifyEach && r.verifyEach.failed > 0
        ? [`${r.verifyEach.failed} verifies after a restart failed`]
        : []),
    ];
    const row: BenchRow = {
      name: `kill -9 of the daemon under load (${clients} clients × ${depth} in flight, requesting and redeeming; seed ${r.seed})`,
      values: {
        cycles: r.cycles,
        tokens_acknowledged: r.tokensAcknowledged,
        tokens_lost: r.tokensLost,
        redeems_acknowledged: r.redeemsAcknowledged,
        redeems_lost: r.redeemsLost,
        log_entries: r.entries,
        daemon_starts_logged: r.starts,
        verifies_after_restart: r.verifyEach?.runs ?? 0,
        verifies_failed: r.verifyEach?.failed ?? 0,
        final_verify_exit: r.verify.exitCode,
        restart_p50_ms: r.restartMs.p50,
        restart_max_ms: r.restartMs.max,
        seconds: r.seconds,
      },
      target: "0 lost; audit verify exit 0 after every restart and at the end",
      met: r.ok,
      ...(problems.length > 0 ? { note: problems.join("; ") } : {}),
    };
    return [row];
  },
};
