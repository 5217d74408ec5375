import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Swtpm } from "../../src/dev/swtpm.js";
import { quote } from "../../src/tpm/ops/attest.js";
import { ensureAk } from "../../src/tpm/ops/keys.js";
import { DEFAULT_PCR_SELECTION } from "../../src/tpm/ops/pcr.js";
import { parsePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { verifyQuote } from "../../src/tpm/verify-quote.js";
import { type BenchRow, type BenchSuite, percentile, timeRuns } from "./types.js";

const execFileP = promisify(execFile);

function stats(sorted: number[]): Record<string, number> {
  const median = percentile(sorted, 50);
  return { median_ms: median, p99_ms: percentile(sorted, 99), ops_per_s: 1000 / median, n: sorted.length };
}

/** Quote cost through tpm2-tools on swtpm, verify cost in TypeScript, and the process-spawn floor. */
export const suite: BenchSuite = {
  name: "tpm",
  async run(ctx) {
    const n = ctx.quick ? 10 : 30;
    const rows: BenchRow[] = [];
    const floor = await timeRuns(n, 3, () => execFileP("/bin/true"));
    rows.push({ name: "process spawn floor (/bin/true)", values: stats(floor) });

    const tpm = await Swtpm.start({ dir: join(ctx.dir, "tpm") });
    try {
      const ak = await ensureAk(tpm.runner);
      const akPublic = tpmPublicKey(parseTpm2bPublic(ak.public));
      const nonce = new Uint8Array(randomBytes(32));
      const quoteOnce = () =>
        quote(tpm.runner, { akHandle: ak.handle, selection: DEFAULT_PCR_SELECTION, qualifyingData: nonce });
      const quoteTimes = await timeRuns(n, 3, quoteOnce);
      rows.push({
        name: "quote via tpm2-tools (ECC P-256 AK, sha256:0-7,10, swtpm Unix socket)",
        values: stats(quoteTimes),
        baseline: "process spawn floor (/bin/true)",
        note: `${(percentile(quoteTimes, 50) / percentile(floor, 50)).toFixed(1)}× the spawn floor`,
      });

      const q = await quoteOnce();
      const pcrs = parsePcrsFile(q.pcrsFile);
      const input = {
        attest: q.attest,
        signature: q.signature,
        akPublic,
        expectedQualifyingData: nonce,
        expectedSelection: DEFAULT_PCR_SELECTION,
        pcrValues: pcrs.values,
      };
      if (!verifyQuote(input).ok) throw new Error("bench quote does not verify");
      const iterations = ctx.quick ? 500 : 5000;
      const verifyTimes = await timeRuns(iterations, 200, () => verifyQuote(input));
      const verifyMedian = percentile(verifyTimes, 50);
      rows.push({
        name: "verifyQuote in TypeScript (parse + ECDSA verify + checks)",
        values: {
          median_us: verifyMedian * 1000,
          p99_us: percentile(verifyTimes, 99) * 1000,
          ops_per_s: 1000 / verifyMedian,
        },
        baseline: "tpm2_checkquote (spawned)",
      });

      await writeFile(join(ctx.dir, "q.msg"), q.attest);
      await writeFile(join(ctx.dir, "q.sig"), q.signature);
      await writeFile(join(ctx.dir, "q.pcrs"), q.pcrsFile);
      await writeFile(join(ctx.dir, "ak.pem"), String(akPublic.export({ type: "spki", format: "pem" })));
      const hex = Buffer.from(nonce).toString("hex");
      const check = await timeRuns(n, 3, () =>
        execFileP(
          "tpm2_checkquote",
          ["-u", "ak.pem", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q", hex],
          { cwd: ctx.dir },
        ),
      );
      rows.push({
        name: "tpm2_checkquote (spawned)",
        values: stats(check),
        baseline: "process spawn floor (/bin/true)",
      });
    } finally {
      await tpm.stop();
    }
    return rows;
  },
};
