import { ExecgateError } from "../core/errors.js";
import { bytesEqual, fromHex, toHex } from "../core/hex.js";
import type { EventLog } from "./eventlog-parse.js";
import { QUIRKS, type Quirk } from "./eventlog-quirks.js";
import { EV, MAX_PCR_INDEX } from "./eventlog-types.js";
import { type BankName, extend, type HashAlg, type PcrHexValues } from "./hash.js";

/** Replayed PCR values of one bank. Only PCRs that some event extended (and PCR 0) are present. */
export interface BankReplay {
  readonly alg: HashAlg;
  readonly pcrs: ReadonlyMap<number, Uint8Array>;
}

export interface EventLogReplay {
  /** Banks that could be replayed completely, in Spec ID order. */
  readonly banks: readonly BankReplay[];
  /**
   * Banks declared by the log that cannot be replayed: an unknown algorithm, or a measured
   * event without a digest for that bank. Their values are not reported (fail closed).
   */
  readonly incompleteBanks: readonly string[];
  /** Initial value of PCR 0's last byte: StartupLocality, or 4 for an H-CRTM (PFP §10.4.5.3). */
  readonly pcr0Locality: number;
}

/** Initial PCR value: zero, except PCR 0 whose last byte is the startup locality. */
export function initialPcr(alg: HashAlg, index: number, pcr0Locality: number): Uint8Array {
  const v = new Uint8Array(alg.size);
  if (index === 0) v[alg.size - 1] = pcr0Locality;
  return v;
}

/**
 * Replays the log into PCR values per bank: start from the initial values, skip EV_NO_ACTION
 * (never extended — PFP §10.4.5, including SP800-155 and StartupLocality events), and extend
 * every other event's digest in its bank. Only digests count here; event types and data are
 * not trusted for anything but skipping EV_NO_ACTION, and an EV_NO_ACTION cannot change a PCR.
 */
export function replayEventLog(log: EventLog, extra: readonly Quirk[] = []): EventLogReplay {
  const pcr0Locality = log.hcrtm ? 4 : (log.startupLocality ?? 0);
  const banks: BankReplay[] = [];
  const incompleteBanks: string[] = [];
  for (const a of log.algorithms) {
    if (!a.alg) {
      incompleteBanks.push(`0x${a.algId.toString(16).padStart(4, "0")}`);
      continue;
    }
    const alg = a.alg;
    const pcrs = new Map<number, Uint8Array>();
    if (pcr0Locality !== 0) pcrs.set(0, initialPcr(alg, 0, pcr0Locality));
    let complete = true;
    for (const e of log.events) {
      if (e.eventType === EV.EV_NO_ACTION) continue;
      const d = e.digests.find((x) => x.algId === a.algId);
      if (!d) {
        complete = false;
        break;
      }
      const cur = pcrs.get(e.pcrIndex) ?? initialPcr(alg, e.pcrIndex, pcr0Locality);
      pcrs.set(e.pcrIndex, extend(alg, cur, d.digest));
    }
    if (!complete) {
      incompleteBanks.push(alg.name);
      continue;
    }
    for (const q of extra) {
      for (const [index, values] of q.extends(alg)) {
        let cur = pcrs.get(index) ?? initialPcr(alg, index, pcr0Locality);
        for (const v of values) cur = extend(alg, cur, v);
        pcrs.set(index, cur);
      }
    }
    banks.push({ alg, pcrs });
  }
  return { banks, incompleteBanks, pcr0Locality };
}

/** The JSON shape: `{"sha256": {"0": "<hex>", …}}`, PCR indices ascending. */
export function replayToPcrValues(r: EventLogReplay): PcrHexValues {
  const out: Partial<Record<BankName, Record<string, string>>> = {};
  for (const b of r.banks) {
    const m: Record<string, string> = {};
    for (const i of [...b.pcrs.keys()].sort((x, y) => x - y)) m[String(i)] = toHex(b.pcrs.get(i)!);
    out[b.alg.name] = m;
  }
  return out;
}

/** Replays only the sha256 bank (what the swtpm end-to-end tests compare with PCR reads). */
export function replaySha256(log: EventLog): ReadonlyMap<number, Uint8Array> {
  const b = replayEventLog(log).banks.find((x) => x.alg.name === "sha256");
  if (!b) throw new ExecgateError("unsupported", "event log has no complete sha256 bank");
  return b.pcrs;
}

export interface PcrMismatch {
  readonly bank: BankName;
  readonly pcr: number;
  readonly quoted: string;
  readonly replayed: string;
}

export interface QuoteComparison {
  readonly ok: boolean;
  readonly mismatches: readonly PcrMismatch[];
  /** Ids of the firmware quirks that were needed to make the replay match. */
  readonly quirks: readonly string[];
  /** Banks compared (present both in the quote and completely in the log). */
  readonly banksCompared: readonly BankName[];
  /** PCR indices compared in at least one bank: only events in these PCRs are bound by the quote. */
  readonly pcrsCompared: readonly number[];
  readonly replay: EventLogReplay;
}

function compare(
  r: EventLogReplay,
  quoted: PcrHexValues,
  indices: readonly number[] | undefined,
): PcrMismatch[] {
  const out: PcrMismatch[] = [];
  for (const b of r.banks) {
    const q = quoted[b.alg.name];
    if (!q) continue;
    const idx = indices ?? [...b.pcrs.keys()].filter((i) => q[String(i)] !== undefined);
    for (const i of idx) {
      const replayed = b.pcrs.get(i) ?? initialPcr(b.alg, i, r.pcr0Locality);
      const qh = q[String(i)];
      if (qh === undefined || !bytesEqual(fromHex(qh, `quoted ${b.alg.name} PCR ${i}`), replayed)) {
        out.push({ bank: b.alg.name, pcr: i, quoted: qh ?? "(not quoted)", replayed: toHex(replayed) });
      }
    }
  }
  return out;
}

/**
 * Compares the replay with quoted PCR values, in every bank present in both. `indices` are
 * the PCRs to compare, each of which must be quoted (default: the PCRs the log extends that
 * the quote holds — PCRs the firmware does not log, e.g. 17–22, keep values the log cannot
 * predict). Nothing to compare → not ok. If the plain replay does not match, each
 * known firmware quirk (eventlog-quirks.ts) is tried alone and kept only if it makes every
 * compared PCR match; the quirks used are reported. No common bank → not ok.
 */
export function compareWithQuote(
  log: EventLog,
  quoted: PcrHexValues,
  indices?: readonly number[],
): QuoteComparison {
  for (const i of indices ?? []) {
    if (!Number.isInteger(i) || i < 0 || i > MAX_PCR_INDEX) {
      throw new ExecgateError("usage", `PCR index ${i} out of range`);
    }
  }
  const plain = replayEventLog(log);
  const banksCompared = plain.banks.map((b) => b.alg.name).filter((n) => quoted[n] !== undefined);
  if (banksCompared.length === 0) {
    return { ok: false, mismatches: [], quirks: [], banksCompared, pcrsCompared: [], replay: plain };
  }
  const pcrSet = new Set<number>();
  for (const b of plain.banks) {
    for (const i of indices ?? [...b.pcrs.keys()])
      if (quoted[b.alg.name]?.[String(i)] !== undefined) pcrSet.add(i);
  }
  const pcrsCompared = [...pcrSet].sort((a, b) => a - b);
  if (pcrsCompared.length === 0) {
    return { ok: false, mismatches: [], quirks: [], banksCompared: [], pcrsCompared, replay: plain };
  }
  const mismatches = compare(plain, quoted, indices);
  if (mismatches.length === 0) {
    return { ok: true, mismatches, quirks: [], banksCompared, pcrsCompared, replay: plain };
  }
  for (const q of QUIRKS) {
    if (!q.applicable(log, mismatches)) continue;
    const r = replayEventLog(log, [q]);
    if (compare(r, quoted, indices).length === 0) {
      return { ok: true, mismatches: [], quirks: [q.id], banksCompared, pcrsCompared, replay: r };
    }
  }
  return { ok: false, mismatches, quirks: [], banksCompared, pcrsCompared, replay: plain };
}
