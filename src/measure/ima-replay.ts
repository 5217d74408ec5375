import { ExecgateError } from "../core/errors.js";
import { bytesEqual, concatBytes, fromHex, toHex } from "../core/hex.js";
import {
  algByName,
  type BankName,
  digest,
  digestLatin1,
  type HashAlg,
  type PcrHexValues,
  putLatin1,
  requireAlg,
} from "./hash.js";
import { type ImaEntry, type ImaFormat, parseImaAsciiChunk, parseImaBinaryChunk } from "./ima-parse.js";

/** CONFIG_IMA_MEASURE_PCR_IDX default. */
export const IMA_PCR = 10;
export const DEFAULT_IMA_BANKS: readonly BankName[] = ["sha1", "sha256"];

/**
 * The value IMA extends into one bank for an entry, as the kernel does since Linux 5.10
 * (ima_calc_field_array_hash per allocated bank, ima_pcr_extend): the hash of the template
 * data with that bank's algorithm; for a violation, all 0xFF of the bank's size.
 */
export function imaExtendValue(e: ImaEntry, alg: HashAlg): Uint8Array {
  if (e.violation) return new Uint8Array(alg.size).fill(0xff);
  if (e.templateHashAlg.name === alg.name) return e.templateHash; // checked equal to digest(alg, templateData)
  return digest(alg, e.templateData);
}

/** Running state of an incremental IMA replay: where we are and the aggregates so far. */
export interface ImaState {
  readonly format: ImaFormat;
  /** Template hash size of a binary list (fixed once the first record was seen). */
  readonly templateHashSize: number | undefined;
  /** Bytes of the list consumed (complete records only). */
  readonly offset: number;
  readonly entries: number;
  /** PCR 10 per bank after `entries` entries. */
  readonly pcr10: ReadonlyMap<BankName, Uint8Array>;
}

export function initialImaState(format: ImaFormat, banks: readonly BankName[] = DEFAULT_IMA_BANKS): ImaState {
  const pcr10 = new Map<BankName, Uint8Array>();
  for (const b of banks) pcr10.set(b, new Uint8Array(requireAlg(b).size));
  return { format, templateHashSize: undefined, offset: 0, entries: 0, pcr10 };
}

/**
 * One bank's PCR 10 extend chain over one buffer holding PCR ‖ value: each extend is one
 * hash and no allocation.
 */
class Pcr10Chain {
  private readonly buf: Uint8Array;
  private readonly size: number;
  constructor(
    readonly alg: HashAlg,
    start: Uint8Array,
  ) {
    this.size = alg.size;
    this.buf = new Uint8Array(2 * alg.size);
    this.buf.set(start);
  }
  /**
   * Extends with the value IMA extends for non-violation entry `e` (imaExtendValue, without
   * allocating); `data` is e.templateData when this bank hashes it. The template hash was
   * checked equal to H(template data) with templateHashAlg: that bank reuses it (sha1 for
   * binary_runtime_measurements, sha256 for its _sha256 sibling).
   */
  extendWith(e: ImaEntry, data: Uint8Array | undefined): void {
    const buf = this.buf;
    const n = this.size;
    if (data === undefined) e.copyTemplateHash(buf, n);
    else putLatin1(digestLatin1(this.alg, data), buf, n);
    putLatin1(digestLatin1(this.alg, buf), buf, 0);
  }
  /** Extends for a violation entry: all 0xFF. */
  extendViolation(): void {
    this.buf.fill(0xff, this.size);
    putLatin1(digestLatin1(this.alg, this.buf), this.buf, 0);
  }
  /** True if this bank reuses `e`'s template hash instead of hashing its template data. */
  reuses(e: ImaEntry): boolean {
    return e.templateHashAlg.name === this.alg.name;
  }
  /** Extends with `e` if it is a PCR 10 entry; true if it was. */
  extend(e: ImaEntry): boolean {
    if (e.pcr !== IMA_PCR) return false;
    if (e.violation) this.extendViolation();
    else this.extendWith(e, this.reuses(e) ? undefined : e.templateData);
    return true;
  }
  equals(quoted: Uint8Array): boolean {
    return bytesEqual(this.buf.subarray(0, this.size), quoted);
  }
  value(): Uint8Array {
    return this.buf.slice(0, this.size);
  }
}

/**
 * Extends the state with entries (PCR 10 entries only; other PCRs are not IMA's aggregate).
 * All banks in one pass over the entries; an entry's template data view is made once for the
 * banks that hash it.
 */
export function applyEntries(state: ImaState, entries: readonly ImaEntry[]): ImaState {
  if (entries.length === 0) return state;
  const chains: Pcr10Chain[] = [];
  for (const [b, v] of state.pcr10) chains.push(new Pcr10Chain(requireAlg(b), v));
  const nb = chains.length;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.pcr !== IMA_PCR) continue;
    if (e.violation) {
      for (let k = 0; k < nb; k++) chains[k]!.extendViolation();
      continue;
    }
    let data: Uint8Array | undefined;
    for (let k = 0; k < nb; k++) {
      const c = chains[k]!;
      if (c.reuses(e)) c.extendWith(e, undefined);
      else {
        if (data === undefined) data = e.templateData;
        c.extendWith(e, data);
      }
    }
  }
  const pcr10 = new Map<BankName, Uint8Array>();
  for (const c of chains) pcr10.set(c.alg.name, c.value());
  const last = entries[entries.length - 1]!;
  return {
    ...state,
    templateHashSize: state.templateHashSize ?? last.templateHash.length,
    offset: last.end,
    entries: last.seq + 1,
    pcr10,
  };
}

/**
 * Parses the bytes that follow `state.offset` (what was appended to the list since) and
 * returns the new complete entries; the state is not advanced — see applyEntries and
 * replayUntilQuote. A trailing partial record is left for the next read.
 */
export function parseNewEntries(state: ImaState, appended: Uint8Array): ImaEntry[] {
  const opts = { base: state.offset, firstSeq: state.entries };
  if (state.format === "ascii") return [...parseImaAsciiChunk(appended, opts).entries];
  const size = state.templateHashSize;
  return [
    ...parseImaBinaryChunk(appended, size === undefined ? opts : { ...opts, templateHashSize: size }).entries,
  ];
}

export interface QuoteMatch {
  readonly matched: boolean;
  /** The state after the entries covered by the quote (unchanged if not matched). */
  readonly state: ImaState;
  /** Entries not covered by the quote: keep them for the next epoch. */
  readonly pending: readonly ImaEntry[];
}

/**
 * The list may run ahead of a quote (entries appended after TPM2_Quote). Replays `entries`
 * one at a time from `state` until PCR 10 in `bank` equals `quoted`, and returns the state at
 * that point plus the entries left over. Not matched at any prefix → matched: false.
 */
export function replayUntilQuote(
  state: ImaState,
  entries: readonly ImaEntry[],
  bank: BankName,
  quoted: Uint8Array,
): QuoteMatch {
  const start = state.pcr10.get(bank);
  if (!start) throw new ExecgateError("usage", `IMA state does not track bank ${bank}`);
  if (bytesEqual(start, quoted)) return { matched: true, state, pending: entries };
  const chain = new Pcr10Chain(requireAlg(bank), start);
  for (let i = 0; i < entries.length; i++) {
    if (chain.extend(entries[i]!) && chain.equals(quoted)) {
      return {
        matched: true,
        state: applyEntries(state, entries.slice(0, i + 1)),
        pending: entries.slice(i + 1),
      };
    }
  }
  return { matched: false, state, pending: entries };
}

/** Replays a whole list into PCR 10 for the given banks (what the swtpm e2e tests compare). */
export function replayIma(
  entries: readonly ImaEntry[],
  banks: readonly BankName[] = DEFAULT_IMA_BANKS,
): PcrHexValues {
  const s = applyEntries(initialImaState("binary", banks), entries);
  const out: Partial<Record<BankName, Record<string, string>>> = {};
  for (const [b, v] of s.pcr10) out[b] = { [String(IMA_PCR)]: toHex(v) };
  return out;
}

export interface BootAggregateCheck {
  readonly ok: boolean;
  readonly bank: BankName;
  readonly pcrs: readonly number[];
  readonly expected: string | undefined;
  readonly listed: string;
  readonly detail?: string;
}

/**
 * boot_aggregate (ima_calc_boot_aggregate): the hash, in the bank of the entry's digest
 * algorithm, of PCRs 0–7 concatenated — plus PCRs 8–9 for any bank but SHA-1 (Linux ≥ 5.8).
 * An all-zero boot_aggregate means IMA found no TPM and never matches.
 */
export function checkBootAggregate(first: ImaEntry, pcrs: PcrHexValues): BootAggregateCheck {
  const listed = toHex(first.fileDigest);
  const algName = first.digestAlg === "sm3" ? "sm3_256" : first.digestAlg;
  const alg = algByName(algName);
  if (first.name !== "boot_aggregate") {
    return {
      ok: false,
      bank: "sha1",
      pcrs: [],
      expected: undefined,
      listed,
      detail: "first entry is not boot_aggregate",
    };
  }
  if (!alg) {
    return { ok: false, bank: "sha1", pcrs: [], expected: undefined, listed, detail: `algorithm ${algName}` };
  }
  const indices = alg.name === "sha1" ? [0, 1, 2, 3, 4, 5, 6, 7] : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const bank = pcrs[alg.name];
  const values: Uint8Array[] = [];
  for (const i of indices) {
    const h = bank?.[String(i)];
    if (h === undefined) {
      return {
        ok: false,
        bank: alg.name,
        pcrs: indices,
        expected: undefined,
        listed,
        detail: `PCR ${i} not given`,
      };
    }
    values.push(fromHex(h, `PCR ${i}`));
  }
  const expected = digest(alg, concatBytes(...values));
  return {
    ok: bytesEqual(expected, first.fileDigest),
    bank: alg.name,
    pcrs: indices,
    expected: toHex(expected),
    listed,
  };
}
