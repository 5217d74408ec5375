import { join } from "node:path";
import { makeEntry } from "../../src/lineage/entry.js";
import { exportBundle } from "../../src/lineage/export.js";
import type { AppendResult } from "../../src/lineage/journal.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";

/**
 * A bundle of `n` entries written by the real lineage (software signer, one checkpoint at the
 * end): requests, each followed by its denial naming it, and every 64th denial also naming
 * entry 0, so back-references near and far are checked. Denials, not allows: without an
 * enrollment no epoch verifies, and each allow would be one more failure to list. For audit scale tests and bench rows.
 */
export const SYNTHETIC_ORIGIN = "execgate.bench/log";

const time = (i: number) => ({
  wallMs: 1_764_000_000_000 + i,
  monoUs: i * 10,
  tpm: { clock: 1_000 + i, resetCount: 1, restartCount: 0 },
});

export async function buildSyntheticBundle(
  dir: string,
  n: number,
  log: (m: string) => void = () => undefined,
): Promise<string> {
  const lineage = await openLineage({
    dir: join(dir, "lineage"),
    origin: SYNTHETIC_ORIGIN,
    signer: softwareEd25519Signer("execgate.bench"),
    now: Date.now,
    checkpointMs: 3_600_000,
  });
  const actionDigest = new Uint8Array(32).fill(7);
  const request = (i: number) =>
    makeEntry("request", time(i), {
      requestId: `r${i}`,
      scope: "prod",
      actionDigest,
      peer: { uid: 1000 + (i % 7), gid: 1000, pid: 4000 + (i % 1000) },
    });
  const decision = (i: number, refs: readonly AppendResult[]) =>
    makeEntry(
      "decision",
      time(i),
      { allow: false, reason: "pcr_mismatch" as const },
      refs.map((r) => ({ index: r.index, leafHash: r.leafHash })),
    );
  const [anchor] = await lineage.add([request(0)]);
  let written = 1;
  const width = 256;
  while (written < n) {
    const base = written;
    const pairs = Math.min(width, Math.floor((n - base) / 2));
    if (pairs === 0) {
      await lineage.add([request(base)]);
      written += 1;
      break;
    }
    await Promise.all(
      Array.from({ length: pairs }, async (_, w) => {
        const i = base + 2 * w;
        const [r] = await lineage.add([request(i)]);
        await lineage.add([decision(i + 1, w % 64 === 0 ? [r!, anchor!] : [r!])]);
      }),
    );
    written += 2 * pairs;
    if (Math.floor(base / 262_144) !== Math.floor(written / 262_144))
      log(`built ${written.toLocaleString("en-US")} entries`);
  }
  const out = join(dir, "bundle");
  await exportBundle({ lineage, out });
  await lineage.close();
  return out;
}
