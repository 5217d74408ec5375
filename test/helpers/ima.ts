import { createHash } from "node:crypto";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { requireAlg } from "../../src/measure/hash.js";
import { parseImaList } from "../../src/measure/ima-parse.js";
import { imaExtendValue } from "../../src/measure/ima-replay.js";
import { pcrExtend } from "../../src/tpm/ops/pcr.js";

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** One binary ima-ng record (the layout of binary_runtime_measurements). */
export function imaNg(path: string, fileDigest: Buffer): Buffer {
  const d = Buffer.concat([Buffer.from("sha256:\0"), fileDigest]);
  const n = Buffer.concat([Buffer.from(path), Buffer.from([0])]);
  const data = Buffer.concat([u32le(d.length), d, u32le(n.length), n]);
  const th = createHash("sha1").update(data).digest();
  return Buffer.concat([u32le(10), th, u32le(6), Buffer.from("ima-ng"), u32le(data.length), data]);
}

/** One binary record of any template with a SHA-1 template hash; `violation` lists it with an all-zero hash. */
export function imaRecord(
  template: string,
  fields: Buffer[],
  opts: { violation?: boolean; pcr?: number } = {},
): Buffer {
  const data = Buffer.concat(fields.flatMap((f) => [u32le(f.length), f]));
  const th = opts.violation ? Buffer.alloc(20) : createHash("sha1").update(data).digest();
  return Buffer.concat([
    u32le(opts.pcr ?? 10),
    th,
    u32le(template.length),
    Buffer.from(template),
    u32le(data.length),
    data,
  ]);
}

/** Extends PCR 10 of both banks for each record, exactly as the kernel does, in step with the list. */
export async function measure(tpm: Swtpm, records: Buffer): Promise<void> {
  for (const e of parseImaList(new Uint8Array(records), "binary").entries) {
    for (const bank of ["sha1", "sha256"] as const)
      await pcrExtend(tpm.runner, 10, bank, imaExtendValue(e, requireAlg(bank)));
  }
}

export const fileHash = (s: string): Buffer => createHash("sha256").update(s).digest();
