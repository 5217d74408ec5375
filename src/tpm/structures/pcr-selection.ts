import { Cursor } from "../../core/cursor.js";
import { ExecgateError } from "../../core/errors.js";
import { bytesEqual } from "../../core/hex.js";
import { ByteWriter } from "../../core/writer.js";
import { hashAlgByName, hashAlgInfo, MAX_PCR_BANKS, MAX_PCR_SELECT, PCR_SELECT_MIN } from "../constants.js";

// TPMS_PCR_SELECTION — TPM 2.0 Part 2 §10.6.2
export interface PcrBankSelection {
  /** TPMI_ALG_HASH of the bank. */
  readonly hashAlg: number;
  /** pcrSelect bitmap; its length is sizeofSelect. Bit (i mod 8) of byte ⌊i/8⌋ selects PCR i. */
  readonly pcrSelect: Uint8Array;
}

// TPML_PCR_SELECTION — Part 2 §10.9.7: banks in the order the TPM reports (and digests) them.
export type PcrSelection = readonly PcrBankSelection[];

/** Reads a TPML_PCR_SELECTION (big-endian TPM marshalling). */
export function readPcrSelection(c: Cursor): PcrSelection {
  const count = c.count(c.u32("TPML_PCR_SELECTION.count"), MAX_PCR_BANKS, "TPML_PCR_SELECTION.count");
  const banks: PcrBankSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = c.u16("TPMS_PCR_SELECTION.hash");
    const size = c.count(c.u8("TPMS_PCR_SELECTION.sizeofSelect"), MAX_PCR_SELECT, "sizeofSelect");
    banks.push({ hashAlg, pcrSelect: c.take(size, "TPMS_PCR_SELECTION.pcrSelect") });
  }
  return banks;
}

export function writePcrSelection(w: ByteWriter, sel: PcrSelection): void {
  w.u32(sel.length);
  for (const b of sel) {
    w.u16(b.hashAlg).u8(b.pcrSelect.length).bytes(b.pcrSelect);
  }
}

/** Parses a whole TPML_PCR_SELECTION (TPM marshalling), exactly. */
export function parsePcrSelection(bytes: Uint8Array): PcrSelection {
  const c = new Cursor(bytes);
  const sel = readPcrSelection(c);
  c.end("TPML_PCR_SELECTION");
  return sel;
}

export function serializePcrSelection(sel: PcrSelection): Uint8Array {
  const w = new ByteWriter();
  writePcrSelection(w, sel);
  return w.finish();
}

/** PCR indices selected in one bank, ascending (the order the TPM digests them, Part 1 §17.6). */
export function pcrIndices(bank: PcrBankSelection): number[] {
  const out: number[] = [];
  for (let byte = 0; byte < bank.pcrSelect.length; byte++) {
    const v = bank.pcrSelect[byte] ?? 0;
    for (let bit = 0; bit < 8; bit++) if ((v >> bit) & 1) out.push(byte * 8 + bit);
  }
  return out;
}

/** Builds a bank selection; sizeofSelect is PCR_SELECT_MIN (3) unless a PCR ≥ 24 needs 4, as tpm2-tools does. */
export function bankSelection(hashAlg: number, pcrs: readonly number[]): PcrBankSelection {
  let size = PCR_SELECT_MIN;
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p >= MAX_PCR_SELECT * 8) {
      throw new ExecgateError("malformed", `PCR index ${p} out of range 0..${MAX_PCR_SELECT * 8 - 1}`);
    }
    size = Math.max(size, (p >> 3) + 1);
  }
  const pcrSelect = new Uint8Array(size);
  for (const p of pcrs) pcrSelect[p >> 3] = (pcrSelect[p >> 3] ?? 0) | (1 << (p & 7));
  return { hashAlg, pcrSelect };
}

/**
 * Parses the tpm2-tools PCR list text form: `sha256:0,1,2` or `sha1:0,1+sha256:0,1`.
 * Bank names are sha1/sha256/sha384/sha512; indices decimal 0..31; duplicates are rejected
 * (a selection is compared bit for bit, so an ambiguous spelling is refused rather than guessed).
 */
export function parsePcrSelectionText(text: string): PcrSelection {
  if (text.length === 0 || text.length > 1024)
    throw new ExecgateError("malformed", "PCR selection text empty or too long");
  const banks: PcrBankSelection[] = [];
  const seen = new Set<number>();
  for (const part of text.split("+")) {
    const m = /^([a-z0-9]+):([0-9]+(?:,[0-9]+)*)$/.exec(part);
    if (m === null) throw new ExecgateError("malformed", `PCR selection "${part}" is not bank:i,j,...`);
    const info = hashAlgByName(m[1] ?? "");
    if (info === undefined) throw new ExecgateError("unsupported", `PCR bank "${m[1]}" is not supported`);
    if (seen.has(info.alg)) throw new ExecgateError("malformed", `PCR bank ${info.name} given twice`);
    seen.add(info.alg);
    const pcrs = (m[2] ?? "").split(",").map((s) => Number.parseInt(s, 10));
    if (new Set(pcrs).size !== pcrs.length)
      throw new ExecgateError("malformed", `duplicate PCR in "${part}"`);
    banks.push(bankSelection(info.alg, pcrs));
  }
  if (banks.length > MAX_PCR_BANKS) throw new ExecgateError("limit_exceeded", "too many PCR banks");
  return banks;
}

/** The text form of a selection (banks with unknown hash algs are written as 0x hex ids). */
export function pcrSelectionToText(sel: PcrSelection): string {
  return sel
    .map((b) => {
      const name = hashAlgInfo(b.hashAlg)?.name ?? `0x${b.hashAlg.toString(16).padStart(4, "0")}`;
      return `${name}:${pcrIndices(b).join(",")}`;
    })
    .join("+");
}

/**
 * Exact equality: same bank count, same bank order, same hash per position, same sizeofSelect
 * and every pcrSelect bit equal. Returns undefined when equal, else a description of the first
 * difference (for operator logs). CVE-2024-29038/29039 were verifiers that did less than this.
 */
export function pcrSelectionDifference(signed: PcrSelection, expected: PcrSelection): string | undefined {
  if (signed.length !== expected.length) {
    return `bank count ${signed.length} (${pcrSelectionToText(signed)}) != expected ${expected.length} (${pcrSelectionToText(expected)})`;
  }
  for (let i = 0; i < signed.length; i++) {
    const s = signed[i];
    const e = expected[i];
    if (s === undefined || e === undefined) return "bank missing";
    if (s.hashAlg !== e.hashAlg)
      return `bank ${i} hash 0x${s.hashAlg.toString(16)} != expected 0x${e.hashAlg.toString(16)}`;
    if (s.pcrSelect.length !== e.pcrSelect.length) {
      return `bank ${i} sizeofSelect ${s.pcrSelect.length} != expected ${e.pcrSelect.length}`;
    }
    if (!bytesEqual(s.pcrSelect, e.pcrSelect)) {
      return `bank ${i} PCRs ${pcrIndices(s).join(",")} != expected ${pcrIndices(e).join(",")}`;
    }
  }
  return undefined;
}

export function pcrSelectionEquals(a: PcrSelection, b: PcrSelection): boolean {
  return pcrSelectionDifference(a, b) === undefined;
}

/** Total number of selected PCRs over all banks. */
export function selectedPcrCount(sel: PcrSelection): number {
  let n = 0;
  for (const b of sel) n += pcrIndices(b).length;
  return n;
}
