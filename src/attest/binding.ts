import { type CborValue, decode, encode } from "../cbor/index.js";
import { digest } from "../core/digest.js";
import { ExecgateError } from "../core/errors.js";

/*
 * What one epoch's quote commits to (docs/architecture.md, "Epochs"). qualifyingData of the quote is
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
  return digest("sha256", encodeEpochBinding(b));
}

/** Strict inverse of encodeEpochBinding (the auditor's view); throws ExecgateError("malformed"). */
export function decodeEpochBinding(bytes: Uint8Array): EpochBinding {
  const v = decode(bytes, { maxDepth: 4, maxItems: 64, maxLength: 1024 });
  const bad = (why: string) => new ExecgateError("malformed", `epoch binding: ${why}`);
  if (!(v instanceof Map)) throw bad("not a map");
  const m = v as ReadonlyMap<unknown, CborValue>;
  const keys = ["domain", "seq", "prev", "issuer", "checkpoint", "boot", "nonce"];
  for (const k of m.keys()) if (!keys.includes(k as string)) throw bad(`unknown field ${String(k)}`);
  if (m.get("domain") !== EPOCH_DOMAIN) throw bad("wrong domain");
  const b32 = (k: string): Uint8Array => {
    const x = m.get(k);
    if (!(x instanceof Uint8Array) || x.length !== 32) throw bad(`${k} must be 32 bytes`);
    return x;
  };
  const seq = m.get("seq");
  const cp = m.get("checkpoint");
  const boot = m.get("boot");
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) throw bad("seq");
  if (
    !Array.isArray(cp) ||
    cp.length !== 2 ||
    typeof cp[0] !== "number" ||
    !(cp[1] instanceof Uint8Array) ||
    cp[1].length !== 32
  ) {
    throw bad("checkpoint must be [size, root]");
  }
  if (typeof boot !== "string" || boot.length > 64) throw bad("boot");
  const binding: EpochBinding = {
    seq,
    prev: b32("prev"),
    issuer: b32("issuer"),
    checkpoint: { size: cp[0] as number, root: cp[1] as Uint8Array },
    bootId: boot,
    nonce: b32("nonce"),
  };
  // Canonical: the bytes are exactly what encodeEpochBinding makes of the decoded value.
  const again = encodeEpochBinding(binding);
  if (again.length !== bytes.length || again.some((x, i) => x !== bytes[i])) throw bad("not canonical");
  return binding;
}
