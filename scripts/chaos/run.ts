import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runChaos } from "./chaos.js";
import { summary } from "./report.js";

/**
 * scripts/chaos.sh: N kill -9 cycles of the daemon under load (scripts/chaos/chaos.ts), then the
 * figures. Exit 0 only if nothing acknowledged was lost and the final export verifies; 1 if not;
 * 2 usage.
 */
const USAGE = `usage: scripts/chaos.sh [--no-setup] [--cycles N (10)] [--clients C (4)] [--depth D (2)]
         [--min-load-ms MS (150)] [--max-load-ms MS (600)] [--seed S (random)] [--verify-each]
         [--dir DIR (new; default a temporary one, removed)] [--json]
  Each cycle: start the daemon on a swtpm, check its export holds every token and redeem
  acknowledged so far, load it (C connections × D requests in flight, requesting and
  redeeming), kill -9 it. Then a last start, audit export and audit verify.
  Exit: 0 nothing lost and verify passed; 1 a loss, a failed verify or a daemon that died by
  itself; 2 usage.`;

function count(v: string | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be an integer ≥ ${min}`);
  return n;
}

const parse = () =>
  parseArgs({
    options: {
      cycles: { type: "string" },
      clients: { type: "string" },
      depth: { type: "string" },
      "min-load-ms": { type: "string" },
      "max-load-ms": { type: "string" },
      seed: { type: "string" },
      "verify-each": { type: "boolean" },
      dir: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  });

async function main(): Promise<number> {
  let a: ReturnType<typeof parse>;
  let cycles: number;
  let clients: number;
  let depth: number;
  let minLoadMs: number;
  let maxLoadMs: number;
  let seed: number;
  try {
    a = parse();
    if (a.values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    cycles = count(a.values.cycles, "cycles", 10, 1);
    clients = count(a.values.clients, "clients", 4, 1);
    depth = count(a.values.depth, "depth", 2, 1);
    minLoadMs = count(a.values["min-load-ms"], "min-load-ms", 150, 0);
    maxLoadMs = count(a.values["max-load-ms"], "max-load-ms", 600, minLoadMs);
    seed = count(a.values.seed, "seed", Math.floor(Math.random() * 2 ** 31), 0);
  } catch (e) {
    process.stderr.write(`chaos: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    return 2;
  }
  const given = a.values.dir;
  let dir: string;
  if (given) {
    dir = resolve(given);
    // A fresh directory: on a used one the run would resume its TPM and log, not start clean.
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (e) {
      process.stderr.write(
        `chaos: --dir ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)} (it must not exist)\n`,
      );
      return 2;
    }
  } else dir = await mkdtemp(join(tmpdir(), "execgate-chaos-"));
  let ok = false;
  try {
    const r = await runChaos({
      dir,
      cycles,
      clients,
      depth,
      minLoadMs,
      maxLoadMs,
      seed,
      verifyEach: a.values["verify-each"] === true,
      log: (m) => process.stderr.write(`chaos: ${m}\n`),
    });
    process.stdout.write(a.values.json ? `${JSON.stringify(r)}\n` : `${summary(r)}\n`);
    ok = r.ok;
    return ok ? 0 : 1;
  } finally {
    // A failed run's directory (state, logs, bundle) is kept for a look.
    if (!given && ok) await rm(dir, { recursive: true, force: true });
    else if (!ok) process.stderr.write(`chaos: kept ${dir}\n`);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`chaos: FAIL: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
