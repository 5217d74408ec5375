import { createPublicKey, type KeyObject } from "node:crypto";
import { asExecgateError } from "../core/errors.js";
import { algorithmOf } from "../hsm/keys.js";
import type { Entry } from "../lineage/entry.js";
import { type NoteVerifier, parseNote, parseVerifierKey, verifierKeyString } from "../lineage/note.js";
import type { AuditFailure } from "./verify.js";

/*
 * Which HSM root key a bundle is audited with (pure). The auditor's --hsm-key wins, and the
 * bundle's enrollment/hsm-key.pem must then be that key; without a pin the bundle's own key is
 * used (the caller says so: a bundle cannot vouch for its own key), and it must be there when the
 * log holds HSM signatures. Either way every HSM signature the log holds is checked against it:
 * epochs (auditAttestation), tokens (auditAttestation), checkpoints it signs (log_key), and the
 * co-signatures on checkpoints (here).
 */
export interface HsmKeyAuditInput {
  /** --hsm-key (PEM text), when the auditor pinned a key. */
  readonly pinPem?: string;
  /** enrollment/hsm-key.pem. */
  readonly inBundle?: Uint8Array;
  /** The log's entries, or (streaming) whether any epoch carries an HSM signature. */
  readonly entries?: readonly Entry[];
  readonly epochsSigned?: boolean;
  /** Every signed checkpoint note of checkpoints.log, in order. */
  readonly checkpointNotes: readonly string[];
  /** The log key's note name: the HSM co-signs under `<name>-hsm` (checkpoints = "both"). */
  readonly logKeyName: string;
}

export interface HsmKeyAudit {
  readonly key?: KeyObject;
  /** Where the key came from: the auditor's pin or the bundle's own file. */
  readonly source?: "argument" | "bundle";
  /** True iff some epoch entry carries an HSM signature (then every verified epoch must). */
  readonly epochsSigned: boolean;
  readonly failures: readonly AuditFailure[];
}

export function auditHsmKey(input: HsmKeyAuditInput): HsmKeyAudit {
  const failures: AuditFailure[] = [];
  const fail = (check: string, reason: string, checkpoint?: number) =>
    failures.push({ check, reason, ...(checkpoint !== undefined ? { checkpoint } : {}) });
  const epochsSigned =
    input.epochsSigned ??
    (input.entries ?? []).some((e) => e.type === "epoch" && e.body.hsmSignature !== undefined);
  const cosignName = `${input.logKeyName}-hsm`;
  const cosigned = input.checkpointNotes.map((n, i) => ({ i, sigs: cosignaturesOf(n, cosignName) }));
  const parse = (what: string, pem: Uint8Array | string): KeyObject | undefined => {
    try {
      return createPublicKey(typeof pem === "string" ? pem : Buffer.from(pem));
    } catch (e) {
      fail("hsm_key", `${what} does not parse: ${asExecgateError(e).message}`);
      return undefined;
    }
  };
  const bundled = input.inBundle && parse("enrollment/hsm-key.pem", input.inBundle);
  let key: KeyObject | undefined;
  let source: "argument" | "bundle" | undefined;
  if (input.pinPem !== undefined) {
    key = parse("--hsm-key", input.pinPem);
    source = "argument";
    if (key && bundled && !bundled.equals(key))
      fail("hsm_key", "the bundle's enrollment/hsm-key.pem is not the pinned HSM key");
  } else if (bundled) {
    key = bundled;
    source = "bundle";
  } else if (input.inBundle === undefined) {
    if (epochsSigned)
      fail("hsm_key", "epochs carry HSM signatures but the bundle has no enrollment/hsm-key.pem");
    if (cosigned.some((c) => c.sigs.length > 0))
      fail("hsm_key", "checkpoints carry HSM co-signatures but the bundle has no enrollment/hsm-key.pem");
  }

  const verifier = key && hsmVerifier(cosignName, key);
  if (key && verifier === undefined) fail("hsm_key", "the HSM key is neither ECDSA P-256 nor Ed25519");
  if (verifier) {
    const text = (n: string) => new TextEncoder().encode(parseNote(n).text);
    for (const { i, sigs } of cosigned)
      for (const s of sigs)
        if (s.keyId !== verifier.keyId || !verifier.verify(text(input.checkpointNotes[i]!), s.signature))
          fail("checkpoint_hsm", "the HSM co-signature does not verify with the HSM key", i);
  }
  return { ...(key ? { key } : {}), ...(source ? { source } : {}), epochsSigned, failures };
}

/** The note verifier of the HSM key under `name`, or undefined for a key type notes do not use. */
function hsmVerifier(name: string, key: KeyObject): NoteVerifier | undefined {
  try {
    return parseVerifierKey(verifierKeyString(name, algorithmOf(key), key));
  } catch {
    return undefined;
  }
}

/** The signatures under `name` on a checkpoint note (none if it does not parse: verifyBundle reports that). */
function cosignaturesOf(note: string, name: string) {
  try {
    return parseNote(note).signatures.filter((s) => s.name === name);
  } catch {
    return [];
  }
}
