import { join } from "node:path";
import { ExecgateClient } from "../../src/client/index.js";
import { ChaosHost } from "./host.js";
import { lost, newLineageSeen, readBundleEntries } from "./lineage.js";
import { newAcknowledged, startLoad } from "./load.js";

/**
 * kill -9 of the daemon under load, `cycles` times, against a real swtpm. Each cycle: start the
 * daemon (recovery of the last crash), have it export its log and check that every token and
 * redeem acknowledged so far is in it, put load on it, kill it at a random moment. After the
 * last crash: a final start, `audit export` and `audit verify`, and the same check on that bundle
 * read from the first entry.
 */
export interface ChaosOptions {
  /** Scratch directory (swtpm, state, bundles). */
  readonly dir: string;
  readonly cycles: number;
  /** Connections, each with `depth` requests in flight. */
  readonly clients: number;
  readonly depth: number;
  /** Load lasts between minLoadMs and maxLoadMs before each kill, drawn from `seed`. */
  readonly minLoadMs: number;
  readonly maxLoadMs: number;
  readonly seed: number;
  /** Also `audit verify` the daemon's export after every restart. */
  readonly verifyEach: boolean;
  log(msg: string): void;
}

export interface ChaosReport {
  readonly ok: boolean;
  readonly cycles: number;
  readonly seed: number;
  readonly tokensAcknowledged: number;
  readonly redeemsAcknowledged: number;
  /** Acknowledged but not in the final bundle (or missing after any restart). */
  readonly tokensLost: number;
  readonly redeemsLost: number;
  readonly entries: number;
  /** daemon_start entries in the final bundle: cycles + 1 when every start was recorded. */
  readonly starts: number;
  /** Restarts that cut a torn tail (recovery entries with truncated bytes). */
  readonly tornTails: number;
  readonly denials: Readonly<Record<string, number>>;
  readonly restartMs: { readonly p50: number; readonly max: number };
  readonly verify: { readonly exitCode: number; readonly failures: readonly string[] };
  readonly verifyEach?: { readonly runs: number; readonly failed: number };
  /** A daemon that ended without being killed, or stopped with a non-zero code at the end. */
  readonly unexpected: readonly string[];
  readonly seconds: number;
}

/** mulberry32: a small seeded PRNG, so a run's kill moments can be replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `audit verify --json`: its exit code and failures as "check entry N: reason" lines. */
async function verify(host: ChaosHost, bundle: string): Promise<{ exitCode: number; failures: string[] }> {
  const v = await host.cli(["audit", "verify", bundle, "--trust", host.trust, "--json"]);
  let failures: string[];
  try {
    const r = JSON.parse(v.stdout) as { failures?: { check: string; reason: string; index?: number }[] };
    failures = (r.failures ?? []).map(
      (f) => `${f.check}${f.index !== undefined ? ` entry ${f.index}` : ""}: ${f.reason}`,
    );
  } catch {
    failures = [`audit verify printed no report (exit ${v.code}): ${v.stderr.slice(-500)}`];
  }
  if (v.code !== 0 && failures.length === 0) failures = [`exit ${v.code}: ${v.stderr.slice(-500)}`];
  return { exitCode: v.code, failures };
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const t0 = performance.now();
  const rand = prng(o.seed);
  const acked = newAcknowledged();
  const seen = newLineageSeen();
  const restarts: number[] = [];
  const unexpected: string[] = [];
  let lostTokens = 0;
  let lostRedeems = 0;
  let verifyRuns = 0;
  let verifyFailed = 0;

  const host = await ChaosHost.create(o.dir);
  /** After a restart: the daemon's own export holds everything acknowledged before the crash. */
  const checkAfterRestart = async (cycle: number): Promise<void> => {
    const c = await ExecgateClient.connect(host.socket, { timeoutMs: 60_000 });
    let path: string;
    try {
      path = (await c.exportLineage()).path;
    } finally {
      await c.close();
    }
    await readBundleEntries(path, seen);
    const l = lost(acked, seen);
    lostTokens = Math.max(lostTokens, l.tokens.length);
    lostRedeems = Math.max(lostRedeems, l.redeems.length);
    if (l.tokens.length + l.redeems.length > 0)
      o.log(`after restart ${cycle}: LOST ${l.tokens.length} tokens, ${l.redeems.length} redeems`);
    if (o.verifyEach) {
      const v = await verify(host, path);
      verifyRuns++;
      if (v.exitCode !== 0) {
        verifyFailed++;
        o.log(
          `after restart ${cycle}: audit verify exit ${v.exitCode}: ${v.failures.slice(0, 3).join("; ")}`,
        );
      }
    }
  };

  let final: { exitCode: number; failures: string[] } = { exitCode: -1, failures: ["not reached"] };
  const finalSeen = newLineageSeen();
  try {
    for (let cycle = 1; cycle <= o.cycles; cycle++) {
      restarts.push(await host.start());
      await checkAfterRestart(cycle - 1);
      const tokens0 = acked.tokens.size;
      const redeems0 = acked.redeems.size;
      const load = await startLoad({ socket: host.socket, clients: o.clients, depth: o.depth, acked });
      const loadMs = o.minLoadMs + Math.floor(rand() * (o.maxLoadMs - o.minLoadMs));
      await Promise.race([load.serving, new Promise((r) => setTimeout(r, 30_000))]);
      await new Promise((r) => setTimeout(r, loadMs));
      await host.crash();
      await load.done;
      await load.close();
      o.log(
        `cycle ${cycle}/${o.cycles}: kill -9 ${loadMs} ms after the first token; ` +
          `${acked.tokens.size - tokens0} tokens, ${acked.redeems.size - redeems0} redeems acknowledged`,
      );
    }
    restarts.push(await host.start());
    await checkAfterRestart(o.cycles);

    const bundle = join(o.dir, "bundle");
    const ex = await host.cli(["audit", "export", "--out", bundle]);
    if (ex.code !== 0) {
      final = { exitCode: ex.code, failures: [`audit export exit ${ex.code}: ${ex.stderr.slice(-500)}`] };
    } else {
      final = await verify(host, bundle);
      await readBundleEntries(bundle, finalSeen);
      const l = lost(acked, finalSeen);
      lostTokens = Math.max(lostTokens, l.tokens.length);
      lostRedeems = Math.max(lostRedeems, l.redeems.length);
    }
    const code = await host.stop();
    if (code !== 0) unexpected.push(`final SIGTERM stop exited ${code}`);
  } catch (e) {
    throw new Error(
      `${e instanceof Error ? e.message : String(e)}\ndaemon stderr (tail):\n${host.stderrTail()}`,
    );
  } finally {
    if (host.unexpectedExit) unexpected.unshift(host.unexpectedExit);
    await host.dispose();
  }

  restarts.sort((a, b) => a - b);
  const ok =
    lostTokens === 0 &&
    lostRedeems === 0 &&
    final.exitCode === 0 &&
    verifyFailed === 0 &&
    unexpected.length === 0 &&
    finalSeen.starts === o.cycles + 1 &&
    acked.redeems.size > 0;
  return {
    ok,
    cycles: o.cycles,
    seed: o.seed,
    tokensAcknowledged: acked.tokens.size,
    redeemsAcknowledged: acked.redeems.size,
    tokensLost: lostTokens,
    redeemsLost: lostRedeems,
    entries: finalSeen.size,
    starts: finalSeen.starts,
    tornTails: finalSeen.tornTails,
    denials: Object.fromEntries(acked.denials),
    restartMs: {
      p50: restarts[Math.floor((restarts.length - 1) / 2)] ?? Number.NaN,
      max: restarts.at(-1) ?? Number.NaN,
    },
    verify: final,
    ...(o.verifyEach ? { verifyEach: { runs: verifyRuns, failed: verifyFailed } } : {}),
    unexpected,
    seconds: (performance.now() - t0) / 1000,
  };
}
