import { Cursor } from "../../core/cursor.js";
import { ExecgateError } from "../../core/errors.js";
import { hashAlgInfo, MAX_DIGEST_BUFFER, MAX_PCR_BANKS, MAX_PCR_SELECT } from "../constants.js";
import { type PcrBankSelection, type PcrSelection, pcrIndices } from "./pcr-selection.js";
import { type PcrValues, selectedPcrValues } from "./pcr-values.js";

/*
 * The PCR file tpm2-tools 5.4 writes with `tpm2_quote -o FILE` (default `-F serialized`) and
 * reads with `tpm2_checkquote -f FILE`. It is not TPM marshalling but a dump of the TSS C
 * structs, little-endian with C padding (found by experiment on swtpm, see
 * test/fixtures/tpm/README.md; the layout matches tpm2-tools lib/pcr.c `tpm2_pcrs`):
 *
 *   TPML_PCR_SELECTION   u32 count; TPMS_PCR_SELECTION[16]          = 4 + 16 × 8 = 132 bytes
 *     TPMS_PCR_SELECTION u16 hash; u8 sizeofSelect; u8 pcrSelect[4]; u8 pad  = 8 bytes
 *   u32 n                number of TPML_DIGEST that follow (≤ 32, TPM2_MAX_PCRS)
 *   TPML_DIGEST[n]       u32 count (≤ 8); TPM2B_DIGEST[8]            = 4 + 8 × 66 = 532 bytes
 *     TPM2B_DIGEST       u16 size; u8 buffer[64]                    = 66 bytes
 *
 * The digests, taken in order over all lists, are the selected PCR values in selection order
 * (banks as selected, PCRs ascending). tpm2-tools fills each list with what one TPM2_PCR_Read
 * returned, so list boundaries carry no meaning; we write full lists of 8.
 */

const SELECTION_STRUCT_SIZE = 4 + MAX_PCR_BANKS * 8;
/** TPM2_MAX_PCRS in tpm2-tools' `tpm2_pcrs.pcr_values[]`. */
export const MAX_PCRS_FILE_DIGEST_LISTS = 32;
/** TPML_DIGEST.digests[8] — TPM 2.0 Part 2 §10.9.2. */
const DIGESTS_PER_LIST = 8;
const DIGEST_LIST_SIZE = 4 + DIGESTS_PER_LIST * (2 + MAX_DIGEST_BUFFER);

export interface PcrsFile {
  readonly selection: PcrSelection;
  /** Selected PCR values in selection order. */
  readonly values: PcrValues;
}

function readCSelection(c: Cursor): PcrSelection {
  const count = c.count(c.u32le("TPML_PCR_SELECTION.count"), MAX_PCR_BANKS, "TPML_PCR_SELECTION.count");
  const banks: PcrBankSelection[] = [];
  for (let i = 0; i < MAX_PCR_BANKS; i++) {
    const hashAlg = c.u16le("TPMS_PCR_SELECTION.hash");
    const size = c.u8("TPMS_PCR_SELECTION.sizeofSelect");
    const select = c.bytesView(MAX_PCR_SELECT, "TPMS_PCR_SELECTION.pcrSelect");
    c.skip(1, "TPMS_PCR_SELECTION padding");
    if (i >= count) continue;
    c.count(size, MAX_PCR_SELECT, "TPMS_PCR_SELECTION.sizeofSelect");
    // bits beyond sizeofSelect are not part of the selection; refuse them rather than guess
    for (let j = size; j < MAX_PCR_SELECT; j++) {
      if (select[j] !== 0)
        throw new ExecgateError("malformed", `pcrs file bank ${i}: bits set beyond sizeofSelect`);
    }
    banks.push({ hashAlg, pcrSelect: select.slice(0, size) });
  }
  return banks;
}

/** Parses a tpm2-tools PCR file (`-F serialized`). Digest sizes must match their banks. */
export function parsePcrsFile(bytes: Uint8Array): PcrsFile {
  const c = new Cursor(bytes);
  const selection = readCSelection(c.sub(SELECTION_STRUCT_SIZE, "TPML_PCR_SELECTION struct"));
  const lists = c.count(c.u32le("tpm2_pcrs.count"), MAX_PCRS_FILE_DIGEST_LISTS, "tpm2_pcrs.count");
  c.need(lists * DIGEST_LIST_SIZE, "TPML_DIGEST[]");
  const digests: Uint8Array[] = [];
  for (let l = 0; l < lists; l++) {
    const n = c.count(c.u32le("TPML_DIGEST.count"), DIGESTS_PER_LIST, "TPML_DIGEST.count");
    for (let d = 0; d < DIGESTS_PER_LIST; d++) {
      const size = c.u16le("TPM2B_DIGEST.size");
      const buf = c.bytesView(MAX_DIGEST_BUFFER, "TPM2B_DIGEST.buffer");
      if (d >= n) continue;
      c.count(size, MAX_DIGEST_BUFFER, "TPM2B_DIGEST.size");
      digests.push(buf.slice(0, size));
    }
  }
  c.end("pcrs file");

  const values = new Map<number, Map<number, Uint8Array>>();
  let k = 0;
  for (const bank of selection) {
    const info = hashAlgInfo(bank.hashAlg);
    if (info === undefined)
      throw new ExecgateError("unsupported", `pcrs file bank 0x${bank.hashAlg.toString(16)}`);
    if (values.has(bank.hashAlg)) throw new ExecgateError("malformed", `pcrs file bank ${info.name} twice`);
    const m = new Map<number, Uint8Array>();
    for (const i of pcrIndices(bank)) {
      const v = digests[k++];
      if (v === undefined)
        throw new ExecgateError("malformed", "pcrs file has fewer digests than selected PCRs");
      if (v.length !== info.digestSize) {
        throw new ExecgateError("malformed", `pcrs file PCR ${info.name}:${i} is ${v.length} bytes`);
      }
      m.set(i, v);
    }
    values.set(bank.hashAlg, m);
  }
  if (k !== digests.length)
    throw new ExecgateError("malformed", "pcrs file has more digests than selected PCRs");
  return { selection, values };
}

/** Writes a PCR file that tpm2_checkquote -f accepts (byte-identical to what tpm2_quote -o writes). */
export function serializePcrsFile(selection: PcrSelection, values: PcrValues): Uint8Array {
  if (selection.length > MAX_PCR_BANKS) throw new ExecgateError("limit_exceeded", "too many PCR banks");
  const digests = selectedPcrValues(selection, values);
  const lists = Math.ceil(digests.length / DIGESTS_PER_LIST);
  if (lists > MAX_PCRS_FILE_DIGEST_LISTS) throw new ExecgateError("limit_exceeded", "too many PCRs");
  const out = new Uint8Array(SELECTION_STRUCT_SIZE + 4 + lists * DIGEST_LIST_SIZE);
  const v = new DataView(out.buffer);
  v.setUint32(0, selection.length, true);
  selection.forEach((b, i) => {
    if (b.pcrSelect.length > MAX_PCR_SELECT) throw new ExecgateError("limit_exceeded", "sizeofSelect > 4");
    const o = 4 + i * 8;
    v.setUint16(o, b.hashAlg, true);
    out[o + 2] = b.pcrSelect.length;
    out.set(b.pcrSelect, o + 3);
  });
  v.setUint32(SELECTION_STRUCT_SIZE, lists, true);
  for (let l = 0; l < lists; l++) {
    const base = SELECTION_STRUCT_SIZE + 4 + l * DIGEST_LIST_SIZE;
    const chunk = digests.slice(l * DIGESTS_PER_LIST, (l + 1) * DIGESTS_PER_LIST);
    v.setUint32(base, chunk.length, true);
    chunk.forEach((d, j) => {
      const o = base + 4 + j * (2 + MAX_DIGEST_BUFFER);
      v.setUint16(o, d.length, true);
      out.set(d, o + 2);
    });
  }
  return out;
}
