import { createPublicKey, type KeyObject } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { asExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import { BlobStore } from "../lineage/blobs.js";
import { parseCheckpointLog, type SegmentEvent } from "../lineage/bundle-files.js";
import { openCheckpoint } from "../lineage/checkpoint.js";
import { decodeEntry, type Entry } from "../lineage/entry.js";
import type { NoteVerifier } from "../lineage/note.js";
import { decodePolicyRecord, isPolicyRecord } from "../policy/record.js";
import { parseTpm2bPublic, type TpmtPublic, tpmName, tpmPublicKey } from "../tpm/structures/public.js";
import { type AttestationOptions, attestationAuditor } from "./attestation.js";
import { hostUeid, originFailure } from "./ek-binding.js";
import { auditEnrollment } from "./enrollment.js";
import { auditHsmKey } from "./hsm-key.js";
import { type AuditFailure, PROGRESS_EVERY } from "./verify.js";

/**
 * Why the bundle's enrollment/ak.pub is not the AK the auditor enrolled (--ak-pub), or undefined
 * if it is. The pin is the ak.pub `execgate enroll` wrote (TPM2B_PUBLIC, compared by TPM Name,
 * which covers the attributes too) or the AK's SubjectPublicKeyInfo PEM (compared as a key).
 * Without a pin the AK is whatever the bundle carries, so a whole enrollment from another TPM of
 * the same vendor would pass the EK chain.
 */
function akPinFailure(pin: Uint8Array, inBundle: Uint8Array | undefined): string | undefined {
  if (inBundle === undefined) return "the bundle has no enrollment/ak.pub to compare with --ak-pub";
  let bundleAk: TpmtPublic;
  try {
    bundleAk = parseTpm2bPublic(inBundle);
  } catch (err) {
    return `enrollment/ak.pub: ${asExecgateError(err).message}`;
  }
  try {
    const text = new TextDecoder().decode(pin);
    if (text.trimStart().startsWith("-----BEGIN")) {
      const der = (k: KeyObject) => k.export({ type: "spki", format: "der" });
      return der(createPublicKey(text)).equals(der(tpmPublicKey(bundleAk)))
        ? undefined
        : "the bundle's AK is not the pinned AK (public key differs)";
    }
    return bytesEqual(tpmName(parseTpm2bPublic(pin)), tpmName(bundleAk))
      ? undefined
      : "the bundle's AK is not the pinned AK (TPM Name differs)";
  } catch (err) {
    return `--ak-pub: ${asExecgateError(err).message}`;
  }
}

/**
 * Every policy a policy_loaded entry names is in blobs/ (the daemon stores it before writing the
 * entry): its record, and each file the record names, so the auditor can read the allowlist an
 * epoch was judged by. A blob that is no policy record is a policy file stored before records
 * existed (its digest is the file's own), with nothing more to find.
 */
export async function auditPolicyBlobs(
  dir: string,
  entries: IndexedEntries,
  read = blobReader(dir),
): Promise<AuditFailure[]> {
  const failures: AuditFailure[] = [];
  const seen = new Set<string>();
  for (const [index, e] of indexed(entries)) {
    if (e.type !== "policy_loaded" || seen.has(toHex(e.body.policyDigest))) continue;
    seen.add(toHex(e.body.policyDigest));
    const fail = (reason: string) => failures.push({ check: "policy_blob", index, reason });
    const rec = await read(e.body.policyDigest);
    if ("why" in rec) {
      fail(`the policy it loaded: ${rec.why}`);
      continue;
    }
    if (!isPolicyRecord(rec.bytes)) continue;
    try {
      const r = decodePolicyRecord(rec.bytes);
      const named: [string, Uint8Array | undefined][] = [
        ["policy file", r.policy],
        ["allowlist", r.allowlist],
        ["Keylime runtime policy", r.keylimePolicy],
      ];
      for (const [what, d] of named) {
        const file = d && (await read(d));
        if (file && "why" in file) fail(`the policy's ${what}: ${file.why}`);
      }
    } catch (err) {
      fail(asExecgateError(err).message);
    }
  }
  return failures;
}

/**
 * Every blob an epoch names as its evidence (the event log, each IMA list segment it read) is in
 * blobs/ and is what its digest says: without them an auditor cannot re-check what the epoch
 * judged. A bundle exported without blobs fails here, as it should.
 */
export async function auditEvidenceBlobs(
  dir: string,
  entries: IndexedEntries,
  read = blobReader(dir),
): Promise<AuditFailure[]> {
  const failures: AuditFailure[] = [];
  /** Digest → why it failed (undefined: it is fine), so a blob many epochs name is read once. */
  const checked = new Map<string, string | undefined>();
  for (const [index, e] of indexed(entries)) {
    if (e.type !== "epoch") continue;
    for (const d of e.body.evidence ?? []) {
      const hex = toHex(d);
      if (!checked.has(hex)) {
        const r = await read(d);
        checked.set(hex, "why" in r ? r.why : undefined);
      }
      const why = checked.get(hex);
      if (why !== undefined)
        failures.push({ check: "evidence_blob", index, reason: `evidence ${hex}: ${why}` });
    }
  }
  return failures;
}

/**
 * Reads blobs of a bundle: the bytes, or why not (missing, or not what its name says). Each
 * digest asked for is added to `asked`: those blobs' digests are checked here, the others'
 * by blob_digest.
 */
function blobReader(dir: string, asked?: Set<string>) {
  const store = new BlobStore(join(dir, "blobs"));
  return (d: Uint8Array): Promise<{ bytes: Uint8Array } | { why: string }> => {
    asked?.add(toHex(d));
    return store.get(d).then(
      (bytes) => ({ bytes }),
      (err: unknown) => ({ why: asExecgateError(err).message }),
    );
  };
}

/** All entries (position = index), or some of them with their index. */
type IndexedEntries = readonly Entry[] | readonly (readonly [number, Entry])[];

function indexed(entries: IndexedEntries): Iterable<readonly [number, Entry]> {
  return entries.map((e, i) =>
    Array.isArray(e) ? (e as readonly [number, Entry]) : ([i, e as Entry] as const),
  );
}

/**
 * What the log pass learns for the key and attestation audits, which need it before their own
 * pass: whether any epoch is HSM-signed, the entries that name blobs, and the first entry that
 * does not decode (the attestation needs every entry, in order). Entries after a bad segment
 * header are not indexed, as the log pass reports.
 */
export class LogFacts {
  epochsSigned = false;
  readonly blobEntries: [number, Entry][] = [];
  undecodable: AuditFailure | undefined;
  private stopped = false;

  /** A segment header that does not parse: no later entry is indexed. */
  stop(): void {
    this.stopped = true;
  }

  /** True iff the entry is one the attestation audits (decoded, before any stop). */
  push(index: number, entry: Entry | undefined, error: unknown): entry is Entry {
    if (this.stopped || this.undecodable) return false;
    if (entry === undefined) {
      this.undecodable = { check: "entry", index, reason: asExecgateError(error).message };
      return false;
    }
    if (entry.type === "epoch") {
      if (entry.body.hsmSignature !== undefined) this.epochsSigned = true;
      if ((entry.body.evidence ?? []).length > 0) this.blobEntries.push([index, entry]);
    } else if (entry.type === "policy_loaded") this.blobEntries.push([index, entry]);
    return true;
  }
}

/** Reads a bundle's enrollment/ files and runs the key-chain and attestation audits on it. */
export async function prepareKeysAndAttestation(
  dir: string,
  checkpointLog: Uint8Array,
  logKey: NoteVerifier,
  opts: {
    trustPem?: string;
    origin: string;
    hsmKeyPem?: string;
    akPin?: Uint8Array;
  },
): Promise<AttestationPass> {
  const failures: AuditFailure[] = [];
  const e = join(dir, "enrollment");
  const opt = (name: string) =>
    readFile(join(e, name)).then(
      (b) => new Uint8Array(b),
      () => undefined,
    );
  const names = await readdir(e).catch(() => [] as string[]);
  const ekCertificates: { name: string; der: Uint8Array }[] = [];
  for (const name of names.filter((x) => /^ek-cert-.*\.der$/.test(x)).sort()) {
    const der = await opt(name);
    if (der) ekCertificates.push({ name, der });
  }
  const [ekPublic, akPublic, akPem, signingKeyPublic, signingKeyPem, attest, signature, qd, hsmKeyFile] =
    await Promise.all(
      [
        "ek.pub",
        "ak.pub",
        "ak.pem",
        "signing-key.pub",
        "signing-key.pem",
        "signing-key.certify.attest",
        "signing-key.certify.sig",
        "signing-key.certify.qd",
        "hsm-key.pem",
      ].map(opt),
    );
  if (opts.akPin !== undefined) {
    const reason = akPinFailure(opts.akPin, akPublic);
    if (reason !== undefined) failures.push({ check: "ak_pin", reason });
  }

  const checkpointNotes: string[] = [];
  const checkpoints = new Map<number, Uint8Array>();
  for (const r of parseCheckpointLog(checkpointLog).records) {
    if (r.kind !== "checkpoint") continue;
    checkpointNotes.push(r.note);
    try {
      const cp = openCheckpoint(r.note, opts.origin, logKey).checkpoint;
      checkpoints.set(cp.size, cp.rootHash);
    } catch {
      // verifyBundle reports it
    }
  }

  // The auditor's own anchors decide what must hold: --trust makes the TPM chain required,
  // --hsm-key the HSM root; with neither, the TPM chain is required (and fails without --trust).
  const requireTpm = opts.trustPem !== undefined || opts.hsmKeyPem === undefined;
  const hsmInput = {
    ...(opts.hsmKeyPem !== undefined ? { pinPem: opts.hsmKeyPem } : {}),
    ...(hsmKeyFile ? { inBundle: hsmKeyFile } : {}),
    checkpointNotes,
    logKeyName: logKey.name,
  };
  // Which key, and from where, does not depend on the log; its failures do (epochsSigned).
  const hsm = auditHsmKey({ ...hsmInput, epochsSigned: false });
  const hsmPublic = hsm.key;
  const keys = !requireTpm
    ? { failures: [] as AuditFailure[], ak: undefined }
    : auditEnrollment({
        ...(ekPublic ? { ekPublic } : {}),
        ekCertificates,
        ...(opts.trustPem ? { trustPem: opts.trustPem } : {}),
        ...(akPublic ? { akPublic } : {}),
        ...(akPem ? { akPem } : {}),
        ...(signingKeyPublic ? { signingKeyPublic } : {}),
        ...(signingKeyPem ? { signingKeyPem } : {}),
        ...(attest && signature && qd ? { certify: { attest, signature, qualifyingData: qd } } : {}),
        logKey: logKey.publicKey,
        ...(hsmPublic ? { hsmPublic } : {}),
        now: new Date(),
      });
  const after: AuditFailure[] = [...keys.failures];
  if (!requireTpm && hsmPublic && !logKey.publicKey.equals(hsmPublic)) {
    after.push({ check: "log_key", reason: "the checkpoints are not signed by the pinned HSM key" });
  }
  const ueid = hostUeid(ekPublic, hsmPublic);
  const origin = ueid && originFailure(ueid, opts.origin);
  if (origin) after.push(origin);
  return new AttestationPass(failures, hsmInput, hsm.source, after, {
    checkpoints,
    akPublic: keys.ak,
    requireTpm,
    ...(hsmPublic ? { hsmPublic } : {}),
    ...(ueid ? { ueid } : {}),
  });
}

/**
 * The attestation audit riding on the log pass (entries are decoded once). Whether every
 * verified epoch must carry the bundle's own HSM key's signature depends on whether any epoch
 * does, known only at the end: the pass assumes it does (an HSM key is configured), and the log
 * is read a second time only when that turns out wrong.
 */
export class AttestationPass {
  private readonly assumeHsmEpochs: boolean;
  private readonly auditor: ReturnType<typeof attestationAuditor>;

  constructor(
    private readonly before: readonly AuditFailure[],
    private readonly hsmInput: Omit<Parameters<typeof auditHsmKey>[0], "epochsSigned" | "entries">,
    private readonly hsmSource: "argument" | "bundle" | undefined,
    private readonly after: readonly AuditFailure[],
    private readonly options: Omit<AttestationOptions, "requireHsmEpochs">,
  ) {
    this.assumeHsmEpochs = options.hsmPublic !== undefined;
    this.auditor = attestationAuditor({ ...options, requireHsmEpochs: this.assumeHsmEpochs });
  }

  /** Each entry LogFacts accepted, in order. */
  push(index: number, entry: Entry): void {
    this.auditor.push(index, entry);
  }

  async finish(
    dir: string,
    facts: LogFacts,
    segmentEvents: () => Iterable<SegmentEvent>,
    blobsRead?: Set<string>,
    onProgress?: (entries: number) => void,
  ): Promise<{
    failures: AuditFailure[];
    summary: { epochs: number; verifiedEpochs: number; allows: number; tokensRedeemed: number };
    /** Where the HSM key the audit used came from (none: the bundle has no HSM key). */
    hsmKeySource?: "argument" | "bundle";
  }> {
    const hsm = auditHsmKey({ ...this.hsmInput, epochsSigned: facts.epochsSigned });
    const failures = [...this.before, ...hsm.failures, ...this.after];
    const empty = { epochs: 0, verifiedEpochs: 0, allows: 0, tokensRedeemed: 0 };
    const source = this.hsmSource ? { hsmKeySource: this.hsmSource } : {};
    if (facts.undecodable) return { failures: [...failures, facts.undecodable], summary: empty, ...source };
    // A pinned key is the auditor's demand; the bundle's own key holds epochs to it if any is signed.
    const requireHsmEpochs = this.hsmSource === "argument" || facts.epochsSigned;
    const a =
      this.options.hsmPublic === undefined || requireHsmEpochs === this.assumeHsmEpochs
        ? this.auditor.finish()
        : secondPass(attestationAuditor({ ...this.options, requireHsmEpochs }), segmentEvents, onProgress);
    failures.push(
      ...a.failures,
      ...(await auditPolicyBlobs(dir, facts.blobEntries, blobReader(dir, blobsRead))),
      ...(await auditEvidenceBlobs(dir, facts.blobEntries, blobReader(dir, blobsRead))),
    );
    return {
      failures,
      summary: {
        epochs: a.epochs,
        verifiedEpochs: a.verifiedEpochs,
        allows: a.allows,
        tokensRedeemed: a.tokensRedeemed,
      },
      ...source,
    };
  }
}

function secondPass(
  auditor: ReturnType<typeof attestationAuditor>,
  segmentEvents: () => Iterable<SegmentEvent>,
  onProgress?: (entries: number) => void,
) {
  let index = 0;
  for (const ev of segmentEvents()) {
    if (ev.kind === "header_error") break; // as LogFacts: entries after it are not indexed
    if (ev.kind !== "entry") continue;
    auditor.push(index, decodeEntry(ev.bytes));
    index += 1;
    if (onProgress && index % PROGRESS_EVERY === 0) onProgress(index);
  }
  return auditor.finish();
}
