import { ExecgateError } from "../core/errors.js";
import { decodeBase64Strict, encodeBase64 } from "./base64.js";
import { HASH_SIZE } from "./hash.js";
import { checkNoteText, type NoteVerifier, type OpenedNote, openNote, signNote } from "./note.js";
import type { NoteSigner } from "./signer.js";

/**
 * C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint):
 *
 *   <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n]*
 *
 * Decisions: the size has no leading zeros and must be a JS safe integer; the root is 32 bytes
 * unless a caller asks otherwise (test vectors use arbitrary strings); extension lines must be
 * non-empty, as the spec says (transparency-dev/formats accepts trailing empty lines; we do not).
 */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
  readonly extensions: readonly string[];
}

export interface CheckpointParseOptions {
  /** Required root hash length; null accepts any length. Default 32 (SHA-256). */
  readonly rootHashLength?: number | null;
}

function malformed(message: string): ExecgateError {
  return new ExecgateError("malformed", `checkpoint: ${message}`);
}

export function formatCheckpoint(cp: Checkpoint): string {
  if (cp.origin.length === 0 || cp.origin.includes("\n")) throw malformed("invalid origin");
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw malformed("invalid size");
  for (const e of cp.extensions)
    if (e.length === 0 || e.includes("\n")) throw malformed("invalid extension line");
  const text = [cp.origin, String(cp.size), encodeBase64(cp.rootHash), ...cp.extensions].join("\n");
  return `${text}\n`;
}

export function parseCheckpoint(text: string, options: CheckpointParseOptions = {}): Checkpoint {
  if (!text.endsWith("\n")) throw malformed("must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw malformed("needs origin, size and root hash lines");
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw malformed("empty origin");
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeLine)) throw malformed("size is not a decimal number");
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) {
    throw new ExecgateError("limit_exceeded", "checkpoint: size above 2^53-1");
  }
  let rootHash: Uint8Array;
  try {
    rootHash = decodeBase64Strict(rootLine, "root hash");
  } catch {
    throw malformed("root hash is not base64");
  }
  const want = options.rootHashLength === undefined ? HASH_SIZE : options.rootHashLength;
  if (want !== null && rootHash.length !== want) throw malformed(`root hash must be ${want} bytes`);
  for (const e of extensions) if (e.length === 0) throw malformed("empty extension line");
  return { origin, size, rootHash, extensions };
}

export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint;
  readonly note: OpenedNote;
}

/**
 * Opens a signed checkpoint: the note must verify (openNote), the log's own key must be among
 * the verified signatures, the body must parse, and its origin must be the expected one.
 */
export function openCheckpoint(
  input: Uint8Array | string,
  origin: string,
  logVerifier: NoteVerifier,
  otherVerifiers: readonly NoteVerifier[] = [],
  options: CheckpointParseOptions = {},
): OpenedCheckpoint {
  const note = openNote(input, [logVerifier, ...otherVerifiers]);
  if (!note.verified.some((s) => s.name === logVerifier.name && s.keyId === logVerifier.keyId)) {
    throw new ExecgateError("verification_failed", "checkpoint: not signed by the log key", {
      check: "checkpoint_log_signature",
    });
  }
  const checkpoint = parseCheckpoint(note.text, options);
  if (checkpoint.origin !== origin) {
    throw new ExecgateError(
      "verification_failed",
      `checkpoint: origin ${JSON.stringify(checkpoint.origin)}`,
      {
        check: "checkpoint_origin",
      },
    );
  }
  return { checkpoint, note };
}

export async function signCheckpoint(cp: Checkpoint, signers: readonly NoteSigner[]): Promise<string> {
  const text = formatCheckpoint(cp);
  checkNoteText(text);
  return signNote(text, signers);
}
