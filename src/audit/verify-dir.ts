import { asExecgateError, ExecgateError } from "../core/errors.js";
import { parseCheckpointLog } from "../lineage/bundle-files.js";
import { parseCheckpoint } from "../lineage/checkpoint.js";
import { type NoteVerifier, parseNote, parseVerifierKey } from "../lineage/note.js";
import { type AuditBundle, auditBlobDigests, readAuditBundle, TileAudit } from "./bundle-dir.js";
import { LogFacts, prepareKeysAndAttestation } from "./files.js";
import { LOG_FILES, pathsOf } from "./inventory.js";
import { FileLeafStore } from "./leaf-file.js";
import { readSegmentEvents } from "./read-segments.js";
import { type AuditFailure, type AuditReport, verifyBundle } from "./verify.js";

/**
 * `audit verify` on a bundle directory: the phases in order, each streaming the log from disk —
 *   keys:        the enrollment files and key chain (files.ts), unless log-only;
 *   log:         segments → entries → tree → checkpoints (verify.ts), tiles recomputed and the
 *                attestation audited alongside, each entry decoded once;
 *   blobs:       every blob hashed against its name.
 * Memory stays bounded whatever the log's size: no phase holds the entries.
 */

export interface VerifyReport extends AuditReport {
  readonly attestation: {
    readonly epochs: number;
    readonly verifiedEpochs: number;
    readonly allows: number;
    readonly tokensRedeemed: number;
  };
  /** The log key the checkpoints were verified with (absent when there was none to use). */
  readonly logKey?: string;
}

export interface VerifyDirOptions {
  readonly logOnly: boolean;
  readonly pins: { readonly vkey?: string; readonly origin?: string };
  readonly trustedNotes: readonly { readonly source: string; readonly note: Uint8Array }[];
  readonly trustPem?: string;
  readonly hsmKeyPem?: string;
  readonly akPin?: Uint8Array;
  /** Progress of a phase: entries (or blobs) done so far. */
  readonly onProgress?: (phase: "log" | "attestation" | "blobs", done: number) => void;
}

export interface VerifyDirResult {
  readonly report: VerifyReport;
  readonly unverified: readonly string[];
  readonly keySource: "bundle" | "argument";
  readonly hsmKeySource?: "bundle" | "argument";
}

export async function verifyBundleDir(dir: string, o: VerifyDirOptions): Promise<VerifyDirResult> {
  const bundle = await readAuditBundle(dir, { keyChain: !o.logOnly });
  // Root causes first: the inventory (missing and unknown files), then the key and origin.
  const failures: AuditFailure[] = [...bundle.inventory.failures];
  const keys = logKeys(bundle, o.pins, failures);
  const unverified = bundle.inventory.unverified;
  if (keys === undefined) return { report: emptyReport(failures), unverified, keySource: "bundle" };
  const [logKey, ...others] = keys.verifiers;
  const events = () => readSegmentEvents(dir, bundle.segmentPaths);
  const checkpointLog = bundle.checkpointLog ?? new Uint8Array(0);
  const tiles = new TileAudit(dir, pathsOf(bundle.inventory, LOG_FILES.tile));
  const facts = new LogFacts();
  const attestation = o.logOnly
    ? undefined
    : await prepareKeysAndAttestation(dir, checkpointLog, logKey!, {
        ...(o.hsmKeyPem !== undefined ? { hsmKeyPem: o.hsmKeyPem } : {}),
        ...(o.akPin !== undefined ? { akPin: o.akPin } : {}),
        ...(o.trustPem !== undefined ? { trustPem: o.trustPem } : {}),
        origin: keys.origin,
      });
  const bundleReport = verifyBundle({
    origin: keys.origin,
    logVerifier: logKey!,
    otherVerifiers: others,
    segmentEvents: observe(events(), facts),
    leaves: new FileLeafStore(),
    checkpointLog,
    trustedCheckpointNotes: o.trustedNotes,
    ...(bundle.checkpointFile ? { checkpointFile: bundle.checkpointFile } : {}),
    onEntry: (index, bytes, leaf, entry, error) => {
      tiles.push(bytes, leaf);
      if (facts.push(index, entry, error)) attestation?.push(index, entry);
    },
    ...(o.onProgress ? { onProgress: (n: number) => o.onProgress?.("log", n) } : {}),
  });
  failures.push(...bundleReport.failures, ...tiles.finish());
  const blobsRead = new Set<string>();
  const audited = attestation
    ? await attestation.finish(dir, facts, events, blobsRead, (n) => o.onProgress?.("attestation", n))
    : { failures: [], summary: { epochs: 0, verifiedEpochs: 0, allows: 0, tokensRedeemed: 0 } };
  failures.push(...audited.failures);
  // The blobs the log references were read and hashed above (policy_blob, evidence_blob);
  // every other one, and all of them with --log-only, is hashed here.
  const unread = pathsOf(bundle.inventory, LOG_FILES.blob).filter((p) => !blobsRead.has(p.slice(6)));
  failures.push(...(await auditBlobDigests(dir, unread, (n) => o.onProgress?.("blobs", n))));
  // The latest checkpoint reported is the bundle's `checkpoint` file, verified as the latest.
  const { latestCheckpoint, ...logReport } = bundleReport;
  const report: VerifyReport = {
    ...logReport,
    ...(latestCheckpoint && bundle.checkpointFile ? { latestCheckpoint } : {}),
    ok: failures.length === 0,
    failures,
    attestation: audited.summary,
    logKey: logKey!.vkey,
  };
  const hsmKeySource = "hsmKeySource" in audited ? audited.hsmKeySource : undefined;
  return { report, unverified, keySource: keys.source, ...(hsmKeySource ? { hsmKeySource } : {}) };
}

/** The events passed through, a bad segment header noted: entries after it are not indexed. */
function* observe<T extends { kind: string }>(events: Iterable<T>, facts: LogFacts): Generator<T> {
  for (const ev of events) {
    if (ev.kind === "header_error") facts.stop();
    yield ev;
  }
}

/**
 * The log key and origin to verify with: the auditor's pins if given (the bundle's log.vkey and
 * origin must then be them), else the bundle's own. Undefined when there is none to use (the
 * failure is already listed).
 */
function logKeys(
  bundle: AuditBundle,
  pins: { vkey?: string; origin?: string },
  failures: AuditFailure[],
): { verifiers: NoteVerifier[]; origin: string; source: "bundle" | "argument" } | undefined {
  const lines = (t: string) => t.split("\n").filter((l) => l.trim().length > 0);
  let own: NoteVerifier[] | undefined;
  if (bundle.vkeyText !== undefined) {
    try {
      own = lines(bundle.vkeyText).map((l) => parseVerifierKey(l.trim()));
      if (own.length === 0) throw new ExecgateError("malformed", "it holds no key");
    } catch (err) {
      failures.push({
        check: "log_vkey",
        path: "log.vkey",
        reason: `log.vkey: ${asExecgateError(err).message}`,
      });
      own = undefined;
    }
  }
  let verifiers = own;
  if (pins.vkey !== undefined) {
    verifiers = lines(pins.vkey).map((l) => parseVerifierKey(l.trim()));
    if (own !== undefined && own[0]!.vkey !== verifiers[0]!.vkey)
      failures.push({
        check: "log_vkey",
        path: "log.vkey",
        reason: "the bundle's log.vkey is not the pinned key (--vkey)",
      });
  }
  // The origin both the checkpoint file and checkpoints.log claim (unverified here) names an
  // origin file that lies; when they disagree, one of them is at fault and their checks say so.
  const claimed = claimedOrigin(bundle.checkpointLog, bundle.checkpointFile);
  let origin = pins.origin;
  if (bundle.originText !== undefined) {
    const m = /^([^\n]+)\n$/.exec(bundle.originText);
    const own = m?.[1];
    if (own === undefined)
      failures.push({ check: "origin_file", path: "origin", reason: "origin is not one line" });
    else if (pins.origin !== undefined && own !== pins.origin)
      failures.push({
        check: "origin_file",
        path: "origin",
        reason: `origin names ${own}, not the pinned ${pins.origin}`,
      });
    else if (pins.origin === undefined && claimed !== undefined && own !== claimed)
      failures.push({
        check: "origin_file",
        path: "origin",
        reason: `origin names ${own}, the checkpoint ${claimed}`,
      });
    origin ??= own;
  }
  origin ??= claimed;
  if (verifiers === undefined || origin === undefined) return undefined;
  return { verifiers, origin, source: pins.vkey !== undefined ? "argument" : "bundle" };
}

function claimedOrigin(
  checkpointLog: Uint8Array | undefined,
  checkpointFile: Uint8Array | undefined,
): string | undefined {
  const originOf = (note: Uint8Array | string) => {
    try {
      return parseCheckpoint(parseNote(note).text).origin;
    } catch {
      return undefined; // checkpoint_signature, checkpoint_file_signature report it
    }
  };
  let fromLog: string | undefined;
  for (const r of checkpointLog ? parseCheckpointLog(checkpointLog).records : [])
    if (r.kind === "checkpoint") fromLog = originOf(r.note);
  const fromFile = checkpointFile && originOf(checkpointFile);
  return fromLog === fromFile ? fromLog : undefined;
}

function emptyReport(failures: readonly AuditFailure[]): VerifyReport {
  return {
    ok: false,
    entries: 0,
    root: "",
    checkpointsVerified: 0,
    failures,
    attestation: { epochs: 0, verifiedEpochs: 0, allows: 0, tokensRedeemed: 0 },
  };
}
