import { createHash } from "node:crypto";
import { encode } from "../cbor/index.js";
import { ExecgateError } from "../core/errors.js";

/*
 * What one epoch's quote commits to (DESIGN.md "Epochs"). qualifyingData of the quote is
 *   SHA-256( deterministic-CBOR( EpochBinding ) )
 * and that same hash is the epoch's id: the next epoch names it as `prev`, tokens carry it.
 *
 *   EpochBinding = {
 *     "domain": "execgate/epoch/v1",   ; domain separation from every other hash we make
 *     "seq": uint,                     ; 0, 1, 2 … within one daemon run
 *     "prev": bstr .size 32,           ; previous epoch's hash (32 zero bytes for seq 0)
 *     "issuer": bstr .size 32,         ; the raw Ed25519 public key that signs tokens
 *     "checkpoint": [size: uint, root: bstr .size 32],  ; latest signed lineage checkpoint
 *     "boot": tstr,                    ; the kernel boot id
 *     "nonce": bstr .size 32,          ; fresh randomness
 *   }
 */
export const EPOCH_DOMAIN = "execgate/epoch/v1";

export interface EpochBinding {
  readonly seq: number;
  readonly prev: Uint8Array;
  readonly issuer: Uint8Array;
  readonly checkpoint: { readonly size: number; readonly root: Uint8Array };
  readonly bootId: string;
  readonly nonce: Uint8Array;
}

export function encodeEpochBinding(b: EpochBinding): Uint8Array {
  if (
    b.prev.length !== 32 ||
    b.issuer.length !== 32 ||
    b.checkpoint.root.length !== 32 ||
    b.nonce.length !== 32
  ) {
    throw new ExecgateError("internal", "epoch binding fields have the wrong size");
  }
  return encode({
    domain: EPOCH_DOMAIN,
    seq: b.seq,
    prev: b.prev,
    issuer: b.issuer,
    checkpoint: [b.checkpoint.size, b.checkpoint.root],
    boot: b.bootId,
    nonce: b.nonce,
  });
}

/** The epoch id and the quote's qualifyingData. */
export function epochHash(b: EpochBinding): Uint8Array {
  return new Uint8Array(createHash("sha256").update(encodeEpochBinding(b)).digest());
}
