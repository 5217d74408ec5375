import { createHash, hash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { replayEventLog } from "../../src/measure/eventlog-replay.js";
import { buildAllowlist, checkAllowlist } from "../../src/measure/ima-allowlist.js";
import { parseImaList } from "../../src/measure/ima-parse.js";
import { applyEntries, initialImaState, parseNewEntries } from "../../src/measure/ima-replay.js";
import { type BenchRow, type BenchSuite, percentile, timeRuns } from "./types.js";

/**
 * IMA parse + template-hash verify + PCR 10 replay (sha1 and sha256 banks) + allowlist check
 * over a generated list, with a 20 MiB allowlist; the cost of one incremental entry; and the
 * replay of the largest corpus event log. Baselines from the same run: raw SHA-256 over the
 * same bytes, and the four hashes per entry the work cannot avoid.
 */

const BASELINE_HASHES = "baseline: the 4 unavoidable hashes per entry (crypto.hash one-shot, string result)";

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** One binary ima-ng record (binary_runtime_measurements layout, SHA-1 template hash). */
function imaNgRecord(path: string, fileDigest: Buffer): Buffer {
  const d = Buffer.concat([Buffer.from("sha256:\0"), fileDigest]);
  const n = Buffer.concat([Buffer.from(path), Buffer.from([0])]);
  const data = Buffer.concat([u32le(d.length), d, u32le(n.length), n]);
  const th = createHash("sha1").update(data).digest();
  return Buffer.concat([u32le(10), th, u32le(6), Buffer.from("ima-ng"), u32le(data.length), data]);
}

function pathFor(i: number): string {
  return `/usr/lib/x86_64-linux-gnu/pkg${i % 997}/lib${i}.so.${i % 7}`;
}

function fileDigest(i: number): Buffer {
  return createHash("sha256").update(`file ${i}`).digest();
}

function generateList(n: number): Buffer {
  const parts: Buffer[] = [imaNgRecord("boot_aggregate", Buffer.alloc(32))];
  for (let i = 1; i < n; i++) parts.push(imaNgRecord(pathFor(i), fileDigest(i)));
  return Buffer.concat(parts);
}

/** sha256sum-style allowlist of `bytes` size: the list's files first, then filler packages. */
function generateAllowlist(entries: number, bytes: number): string {
  const lines: string[] = [];
  let size = 0;
  for (let i = 1; i < entries; i++) {
    const l = `${fileDigest(i).toString("hex")}  ${pathFor(i)}\n`;
    lines.push(l);
    size += l.length;
  }
  for (let i = 0; size < bytes; i++) {
    const l = `${createHash("sha256").update(`other ${i}`).digest("hex")}  /opt/vendor/share/filler/${i}/data.bin\n`;
    lines.push(l);
    size += l.length;
  }
  return lines.join("");
}

function largestCorpusLog(): { path: string; bytes: Uint8Array } | undefined {
  const root = resolve(process.cwd(), "test/corpus/eventlog");
  let best: { path: string; size: number } | undefined;
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (!/\.(json|md|yaml|warn)$/.test(f) && (!best || st.size > best.size))
        best = { path: p, size: st.size };
    }
  };
  try {
    walk(root);
  } catch {
    return undefined;
  }
  if (!best) return undefined;
  return { path: best.path, bytes: new Uint8Array(readFileSync(best.path)) };
}

export const suite: BenchSuite = {
  name: "measure",
  async run(ctx) {
    const rows: BenchRow[] = [];
    const n = ctx.quick ? 10_000 : 100_000;
    const allowBytes = ctx.quick ? 2 * 1024 * 1024 : 20 * 1024 * 1024;
    ctx.log(`generating ${n}-entry IMA list and ${allowBytes >> 20} MiB allowlist`);
    const list = generateList(n);
    const allowText = generateAllowlist(n, allowBytes);

    // Baseline 1: raw SHA-256 over the list bytes.
    const raw = timeRuns(5, 1, () => createHash("sha256").update(list).digest());
    const rawMs = percentile(await raw, 50);
    rows.push({
      name: `baseline: sha256 over the ${(list.length / 2 ** 20).toFixed(1)} MiB list`,
      values: { median_ms: rawMs, mib_per_s: list.length / 2 ** 20 / (rawMs / 1000) },
    });

    // Baseline 2: the four hashes per entry the work cannot avoid: SHA-1 of the template data
    // (verify), SHA-256 of it (sha256 bank value), and one extend per bank (40 and 64 bytes) —
    // made the cheapest way node:crypto offers, as the pipeline makes them (crypto.hash with a
    // "binary" string result: a Buffer result costs ~2.5× more per call).
    const parsedOnce = parseImaList(list).entries;
    const datas = parsedOnce.map((e) => e.templateData);
    const ext1 = new Uint8Array(40);
    const ext256 = new Uint8Array(64);
    const hashesMs = percentile(
      await timeRuns(5, 1, () => {
        for (const data of datas) {
          hash("sha1", data, "binary");
          hash("sha256", data, "binary");
          hash("sha1", ext1, "binary");
          hash("sha256", ext256, "binary");
        }
      }),
      50,
    );
    rows.push({
      name: BASELINE_HASHES,
      values: { median_ms: hashesMs, entries_per_s: n / (hashesMs / 1000) },
    });

    // Allowlist load.
    const loadRuns = await timeRuns(3, 0, () =>
      buildAllowlist({ texts: [allowText], excludeGlobs: ["/tmp/**"] }),
    );
    const loadMs = percentile(loadRuns, 50);
    rows.push({
      name: `allowlist load (${(allowText.length / 2 ** 20).toFixed(1)} MiB, sha256sum format)`,
      values: { median_ms: loadMs, max_ms: loadRuns[loadRuns.length - 1]! },
      target: "< 1 s",
      met: loadMs < 1000,
    });
    const allow = buildAllowlist({ texts: [allowText], excludeGlobs: ["/tmp/**"] });

    // Full pipeline: parse + verify + replay (sha1, sha256) + allowlist.
    const pipeline = await timeRuns(5, 1, () => {
      const entries = parseImaList(list).entries;
      const s = applyEntries(initialImaState("binary"), entries);
      const v = checkAllowlist(entries, allow);
      if (v.length !== 0 || s.entries !== n) throw new Error("bench list did not verify");
    });
    const pipeMs = percentile(pipeline, 50);
    const eps = n / (pipeMs / 1000);
    rows.push({
      name: `IMA parse + verify + PCR 10 replay (sha1, sha256) + allowlist, ${n} entries`,
      values: { median_ms: pipeMs, entries_per_s: eps },
      baseline: BASELINE_HASHES,
      target: "≥ 200k entries/s",
      met: eps >= 200_000,
    });

    // One incremental entry on top of the full state.
    const state = applyEntries(initialImaState("binary"), parsedOnce);
    const one = imaNgRecord(pathFor(1), fileDigest(1));
    const inc = await timeRuns(ctx.quick ? 200 : 2000, 50, () => {
      const e = parseNewEntries(state, one);
      applyEntries(state, e);
      checkAllowlist(e, allow);
    });
    rows.push({
      name: "one new IMA entry (parse, verify, extend two banks, allowlist)",
      values: { median_ms: percentile(inc, 50), p99_ms: percentile(inc, 99) },
      target: "< 1 ms",
      met: percentile(inc, 50) < 1,
      note: "met on the median: p99 on a shared machine measures preemption",
    });

    // Event log replay, largest corpus log.
    const big = largestCorpusLog();
    if (!big) {
      rows.push({ name: "event log replay", values: {}, note: "test/corpus/eventlog not found" });
    } else {
      const name = big.path.split("/test/corpus/eventlog/")[1] ?? big.path;
      const base = await timeRuns(200, 20, () => createHash("sha256").update(big.bytes).digest());
      rows.push({
        name: `baseline: sha256 over ${name} (${big.bytes.length} bytes)`,
        values: { median_ms: percentile(base, 50) },
      });
      const rep = await timeRuns(200, 20, () => replayEventLog(parseEventLog(big.bytes)));
      rows.push({
        name: `event log parse + replay, all banks: ${name}`,
        values: { median_ms: percentile(rep, 50), p99_ms: percentile(rep, 99) },
        baseline: `baseline: sha256 over ${name} (${big.bytes.length} bytes)`,
      });
    }
    return rows;
  },
};
