import { createHash, randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { lost, newLineageSeen, readBundleEntries } from "../../scripts/chaos/lineage.js";
import { newAcknowledged, tokenHash } from "../../scripts/chaos/load.js";
import { makeEntry } from "../../src/lineage/entry.js";
import { Journal } from "../../src/lineage/journal.js";
import { scratchDirs } from "../helpers/scratch.js";

const scratch = scratchDirs("execgate-chaos-lineage-");
const time = { wallMs: 1, monoUs: 1 };

it("the chaos check finds every token and redeem the log holds, reads only new entries, and reports what it lacks", async () => {
  const dir = await scratch();
  // Small segments: the tokens span several files, as a long chaos run's log does.
  const j = await Journal.open({ dir, segmentBytes: 1024 });
  const tokens = Array.from({ length: 40 }, () => new Uint8Array(randomBytes(100)));
  const sha = (t: Uint8Array) => new Uint8Array(createHash("sha256").update(t).digest());
  try {
    for (const t of tokens.slice(0, 20))
      await j.add([makeEntry("token_issued", time, { digest: sha(t) }, [])]);
    for (const t of tokens.slice(0, 10)) await j.add([makeEntry("token_redeemed", time, { token: t }, [])]);
  } finally {
    await j.close();
  }
  const acked = newAcknowledged();
  for (const t of tokens.slice(0, 20)) acked.tokens.add(tokenHash(t));
  for (const t of tokens.slice(0, 10)) acked.redeems.add(tokenHash(t));
  const seen = newLineageSeen();
  await readBundleEntries(dir, seen);
  expect(seen.size).toBe(30);
  expect(seen.starts).toBe(0);
  expect(lost(acked, seen)).toEqual({ tokens: [], redeems: [] });

  // Acknowledged, never written: each is reported.
  acked.tokens.add(tokenHash(tokens[30]!));
  acked.redeems.add(tokenHash(tokens[15]!));
  expect(lost(acked, seen)).toEqual({ tokens: [tokenHash(tokens[30]!)], redeems: [tokenHash(tokens[15]!)] });

  // The log grows: the next read takes the new entries only, and the losses are gone.
  const j2 = await Journal.open({ dir, segmentBytes: 1024 });
  try {
    await j2.add([makeEntry("token_issued", time, { digest: sha(tokens[30]!) }, [])]);
    await j2.add([makeEntry("token_redeemed", time, { token: tokens[15]! }, [])]);
  } finally {
    await j2.close();
  }
  await readBundleEntries(dir, seen);
  expect(seen.size).toBe(32);
  expect(lost(acked, seen)).toEqual({ tokens: [], redeems: [] });
});
