import { createHash, createPublicKey, type KeyObject, verify } from "node:crypto";
import { ExecgateError } from "../core/errors.js";
import { decodeBase64Strict, encodeBase64 } from "./base64.js";
import type { NoteSigner } from "./signer.js";

/**
 * C2SP signed-note (https://c2sp.org/signed-note), pure apart from node:crypto verification.
 *
 *   note      = text "\n" 1*sigline      ; text ends with "\n" and may contain blank lines
 *   sigline   = "— " keyname " " base64(keyID[4] || signature) "\n"
 *   vkey      = keyname "+" hex8(keyID) "+" base64(type || public key)
 *
 * The signature block starts after the LAST blank line. Signature types (§"Signature types"):
 * 0x01 Ed25519 over the text, keyID = SHA-256(name || 0x0A || 0x01 || pubkey)[:4];
 * 0x02 ECDSA "as implemented by github.com/transparency-dev/witness": public key = DER SPKI,
 * signature = ASN.1 DER over SHA-256(text), keyID = SHA-256(DER SPKI)[:4] (no name, no type byte).
 */

export const NOTE_TYPE_ED25519 = 0x01;
export const NOTE_TYPE_ECDSA = 0x02;
/** golang.org/x/mod/sumdb/note rejects notes with more than 100 signature lines; so do we. */
export const MAX_NOTE_SIGNATURES = 100;
/** Bound on the note size we parse at all. */
export const MAX_NOTE_BYTES = 1 << 20;

const SIG_PREFIX = "\u2014 ";
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** True if s has an ASCII control character other than "\n" (signed-note §Format). */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) return true;
  }
  return false;
}
const BAD_NAME = /[\s+]/u;

export type NoteAlgorithm = NoteSigner["algorithm"];

export interface NoteSignature {
  readonly name: string;
  readonly keyId: number;
  /** The signature bytes after the 4-byte key ID. */
  readonly signature: Uint8Array;
}

export interface Note {
  /** The signed text, including its final newline. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly algorithm: NoteAlgorithm;
  readonly publicKey: KeyObject;
  /** The vkey string naming this key. */
  readonly vkey: string;
  verify(text: Uint8Array, signature: Uint8Array): boolean;
}

export interface OpenedNote {
  readonly text: string;
  readonly verified: readonly NoteSignature[];
  /** Signatures by keys we were not given; ignored as the spec requires. */
  readonly unverified: readonly NoteSignature[];
}

function malformed(message: string): ExecgateError {
  return new ExecgateError("malformed", `signed note: ${message}`);
}

export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !BAD_NAME.test(name);
}

/** Raw public key bytes as carried after the type byte in a vkey. */
function publicKeyBytes(algorithm: NoteAlgorithm, key: KeyObject): Uint8Array {
  const der = key.export({ format: "der", type: "spki" });
  if (algorithm === "ed25519") {
    if (key.asymmetricKeyType !== "ed25519")
      throw new ExecgateError("malformed", "note key: not an Ed25519 key");
    return new Uint8Array(der.subarray(ED25519_SPKI_PREFIX.length));
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new ExecgateError("malformed", "note key: not an ECDSA P-256 key");
  }
  return new Uint8Array(der);
}

/** The 4-byte key ID, as a big-endian u32. */
export function noteKeyId(name: string, algorithm: NoteAlgorithm, key: KeyObject): number {
  const raw = publicKeyBytes(algorithm, key);
  const h = createHash("sha256");
  if (algorithm === "ed25519") {
    h.update(name, "utf8").update(Uint8Array.of(0x0a, NOTE_TYPE_ED25519));
  }
  h.update(raw);
  return h.digest().readUInt32BE(0);
}

const hex8 = (n: number): string => n.toString(16).padStart(8, "0");

/** The vkey string for a key: name+hex8(keyID)+base64(type || public key). */
export function verifierKeyString(name: string, algorithm: NoteAlgorithm, key: KeyObject): string {
  if (!isValidKeyName(name))
    throw new ExecgateError("malformed", `note key: invalid key name ${JSON.stringify(name)}`);
  const type = algorithm === "ed25519" ? NOTE_TYPE_ED25519 : NOTE_TYPE_ECDSA;
  const raw = publicKeyBytes(algorithm, key);
  const body = new Uint8Array(1 + raw.length);
  body[0] = type;
  body.set(raw, 1);
  return `${name}+${hex8(noteKeyId(name, algorithm, key))}+${encodeBase64(body)}`;
}

function makeVerifier(
  name: string,
  algorithm: NoteAlgorithm,
  publicKey: KeyObject,
  vkey: string,
): NoteVerifier {
  const keyId = noteKeyId(name, algorithm, publicKey);
  const check =
    algorithm === "ed25519"
      ? (text: Uint8Array, sig: Uint8Array): boolean =>
          sig.length === 64 && verify(null, text, publicKey, sig)
      : (text: Uint8Array, sig: Uint8Array): boolean =>
          verify("sha256", text, { key: publicKey, dsaEncoding: "der" }, sig);
  return {
    name,
    keyId,
    algorithm,
    publicKey,
    vkey,
    verify(text, sig) {
      try {
        return check(text, sig);
      } catch {
        return false; // a malformed DER signature is a failed verification, not a crash
      }
    },
  };
}

/** Parses a vkey; rejects unknown types, wrong key lengths and a key ID that does not match. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  // The base64 key may itself contain "+": split at the first two only.
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  if (second < 0) throw malformed("verifier key must be name+hash+key");
  const name = vkey.slice(0, first);
  const hash = vkey.slice(first + 1, second);
  const b64 = vkey.slice(second + 1);
  if (!isValidKeyName(name)) throw malformed("verifier key: invalid key name");
  if (!/^[0-9a-f]{8}$/.test(hash)) throw malformed("verifier key: hash must be 8 lowercase hex digits");
  const key = decodeBase64Strict(b64, "verifier key");
  let algorithm: NoteAlgorithm;
  let publicKey: KeyObject;
  try {
    if (key[0] === NOTE_TYPE_ED25519) {
      if (key.length !== 33) throw malformed("verifier key: Ed25519 key must be 32 bytes");
      algorithm = "ed25519";
      publicKey = createPublicKey({
        key: Buffer.concat([ED25519_SPKI_PREFIX, key.subarray(1)]),
        format: "der",
        type: "spki",
      });
    } else if (key[0] === NOTE_TYPE_ECDSA) {
      algorithm = "ecdsa-p256";
      publicKey = createPublicKey({ key: Buffer.from(key.subarray(1)), format: "der", type: "spki" });
      // Only P-256 is accepted here; re-exporting also rejects trailing bytes in the DER.
      const der = new Uint8Array(publicKeyBytes(algorithm, publicKey));
      if (Buffer.compare(der, key.subarray(1)) !== 0) throw malformed("verifier key: non-canonical SPKI");
    } else {
      throw new ExecgateError(
        "unsupported",
        `verifier key: unknown signature type 0x${(key[0] ?? 0).toString(16)}`,
      );
    }
  } catch (e) {
    if (e instanceof ExecgateError) throw e;
    throw new ExecgateError("malformed", "verifier key: invalid public key", {}, { cause: e });
  }
  const v = makeVerifier(name, algorithm, publicKey, vkey);
  if (hex8(v.keyId) !== hash) throw malformed("verifier key: key hash does not match the key");
  return v;
}

export function verifierFromSigner(signer: NoteSigner): NoteVerifier {
  return makeVerifier(
    signer.name,
    signer.algorithm,
    signer.publicKey,
    verifierKeyString(signer.name, signer.algorithm, signer.publicKey),
  );
}

function textOf(input: Uint8Array | string): string {
  if (typeof input === "string") return input;
  if (input.length > MAX_NOTE_BYTES) throw new ExecgateError("limit_exceeded", "signed note: too large");
  try {
    return utf8.decode(input);
  } catch (e) {
    throw new ExecgateError("malformed", "signed note: not valid UTF-8", {}, { cause: e });
  }
}

/** Structural parse (no verification). Throws ExecgateError("malformed") on any format error. */
export function parseNote(input: Uint8Array | string): Note {
  const msg = textOf(input);
  if (msg.length > MAX_NOTE_BYTES) throw new ExecgateError("limit_exceeded", "signed note: too large");
  if (hasControl(msg)) throw malformed("control character");
  if (/\p{Cs}/u.test(msg)) throw malformed("not valid UTF-8");
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw malformed("no blank line before the signatures");
  const text = msg.slice(0, split + 1);
  const block = msg.slice(split + 2);
  if (block.length === 0 || !block.endsWith("\n")) throw malformed("signature block must end with a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_NOTE_SIGNATURES) throw malformed(`more than ${MAX_NOTE_SIGNATURES} signatures`);
  const signatures: NoteSignature[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX))
      throw malformed("signature line must start with an em dash and a space");
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(" ");
    if (sp < 0) throw malformed("signature line has no signature");
    const name = rest.slice(0, sp);
    if (!isValidKeyName(name)) throw malformed("invalid key name in signature line");
    let raw: Uint8Array;
    try {
      raw = decodeBase64Strict(rest.slice(sp + 1), "signature");
    } catch {
      throw malformed("signature is not base64");
    }
    if (raw.length < 5) throw malformed("signature too short");
    const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    signatures.push({ name, keyId, signature: raw.slice(4) });
  }
  return { text, signatures };
}

function sigKey(s: NoteSignature): string {
  return `${s.name}+${hex8(s.keyId)}+${encodeBase64(s.signature)}`;
}

/**
 * Verifies a note against known keys (c2sp.org/signed-note §Signatures): signatures by unknown
 * keys are ignored; a signature by a known key that fails rejects the whole note; at least one
 * known signature must verify. Identical signature lines are counted once. Several known keys
 * with the same name and ID are ambiguous and rejected when used.
 */
export function openNote(input: Uint8Array | string, verifiers: readonly NoteVerifier[]): OpenedNote {
  const note = parseNote(input);
  const textBytes = new TextEncoder().encode(note.text);
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<string>();
  for (const s of note.signatures) {
    const k = sigKey(s);
    if (seen.has(k)) continue;
    seen.add(k);
    const matches = verifiers.filter((v) => v.name === s.name && v.keyId === s.keyId);
    if (matches.length === 0) {
      unverified.push(s);
      continue;
    }
    if (matches.length > 1) {
      throw new ExecgateError("malformed", `signed note: ambiguous key ${s.name}+${hex8(s.keyId)}`);
    }
    if (!matches[0]!.verify(textBytes, s.signature)) {
      throw new ExecgateError(
        "verification_failed",
        `signed note: invalid signature for key ${s.name}+${hex8(s.keyId)}`,
        {
          check: "note_signature",
        },
      );
    }
    verified.push(s);
  }
  if (verified.length === 0) {
    throw new ExecgateError("verification_failed", "signed note: no verifiable signatures", {
      check: "note_no_known_signature",
    });
  }
  return { text: note.text, verified, unverified };
}

/** Checks note text is signable: valid, no control characters, ends with a newline. */
export function checkNoteText(text: string): void {
  if (!text.endsWith("\n") || hasControl(text) || /\p{Cs}/u.test(text))
    throw malformed("malformed note text");
}

export function formatSignatureLine(s: NoteSignature): string {
  const raw = new Uint8Array(4 + s.signature.length);
  new DataView(raw.buffer).setUint32(0, s.keyId);
  raw.set(s.signature, 4);
  return `${SIG_PREFIX}${s.name} ${encodeBase64(raw)}\n`;
}

/** Signs text with each signer in order and returns the complete note. */
export async function signNote(text: string, signers: readonly NoteSigner[]): Promise<string> {
  checkNoteText(text);
  const bytes = new TextEncoder().encode(text);
  let out = `${text}\n`;
  for (const s of signers) {
    const keyId = noteKeyId(s.name, s.algorithm, s.publicKey);
    out += formatSignatureLine({ name: s.name, keyId, signature: await s.sign(bytes) });
  }
  return out;
}
