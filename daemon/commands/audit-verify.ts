import { parseCheckpointLog } from "../../src/audit/bundle.js";
import {
  type AuditBundle,
  auditBlobDigests,
  auditTiles,
  readAuditBundle,
} from "../../src/audit/bundle-dir.js";
import { auditKeysAndAttestation } from "../../src/audit/files.js";
import { LOG_FILES, pathsOf } from "../../src/audit/inventory.js";
import { type AuditFailure, verifyBundle } from "../../src/audit/verify.js";
import { asExecgateError, ExecgateError } from "../../src/core/errors.js";
import { parseCheckpoint } from "../../src/lineage/checkpoint.js";
import { type NoteVerifier, parseNote, parseVerifierKey } from "../../src/lineage/note.js";
import { flag, type Parsed, parseCommandArgs, printJson, readInput, str } from "../args.js";
import { formatVerifyReport, type VerifyReport } from "../audit-report.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";

/**
 * Offline verification of an exported lineage bundle (docs/lineage.md, "Audit"). The log key
 * should come from the auditor (--vkey, the key recorded at enrollment); without it the key in
 * the bundle is used and the output says so, since a bundle cannot vouch for its own key.
 */
/** The --trust file's PEM text; a file without a certificate is the auditor's mistake, named. */
async function trustAnchors(path: string): Promise<string> {
  const pem = new TextDecoder().decode(await readInput(path, "trust anchors"));
  if (!pem.includes("-----BEGIN CERTIFICATE-----"))
    throw usageError(`--trust ${path} holds no PEM certificate (give the EK CA root and intermediates)`);
  return pem;
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

function finish(
  p: Parsed,
  report: VerifyReport,
  unverified: readonly string[],
  keySource: "bundle" | "argument",
  hsmKeySource?: "bundle" | "argument",
): number {
  if (flag(p, "json"))
    printJson({ ...report, keySource, ...(hsmKeySource ? { hsmKeySource } : {}), unverified });
  else process.stdout.write(formatVerifyReport(report, unverified, keySource, hsmKeySource));
  return report.ok ? EXIT.ok : EXIT.failed;
}

export const command: Command = {
  summary: "verify a lineage bundle offline; exit 0 only if everything holds",
  usage:
    "DIR [--trust CA.pem] [--ak-pub FILE] [--hsm-key KEY.pem] [--vkey FILE] [--origin ORIGIN] [--trusted-checkpoint NOTE_FILE]... [--log-only] [--json]\n" +
    "  --ak-pub: the AK you enrolled (the ak.pub enroll wrote, or its PEM): the bundle's must be it\n" +
    "    (without it the AK is the one in the bundle's enrollment/)\n" +
    "  --hsm-key: the HSM root key you enrolled (PEM): every epoch must carry its signature\n" +
    "    (without it the bundle's enrollment/hsm-key.pem checks every HSM signature in the log)\n" +
    "  --log-only: check the log and its checkpoints only (no key chain, no attestation)\n" +
    "  --trust: EK certificate trust anchors, one PEM file with the root AND intermediate certificates\n" +
    "    (the TPM vendor's CA chain; for dev: DIR/ek-ca.pem, which `dev up` writes with swtpm_localca's\n" +
    "    root and issuer: DIR/tpm/ca/swtpm-localca-rootca-cert.pem + DIR/tpm/ca/issuercert.pem)\n" +
    "Checks every file is a bundle file (unknown_file, missing_file: docs/audit.md lists them), the log\n" +
    "(segments, entries, back-references, tree, checkpoints, consistency, the checkpoint file, tiles,\n" +
    "blob digests), then the key chain (EK certificate → trust anchors; AK; the AK-certified\n" +
    "checkpoint key signs the checkpoints)\n" +
    "and the attestation (every epoch quote, every allow on a verified epoch, every redeemed token,\n" +
    "every loaded policy's record, file and allowlists in blobs/).\n" +
    "Exit: 0 only if everything holds, 1 with every failure listed, 2 usage, 3 unreadable bundle.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      {
        json: { type: "boolean" },
        vkey: { type: "string" },
        origin: { type: "string" },
        "trusted-checkpoint": { type: "string", multiple: true },
        trust: { type: "string" },
        "hsm-key": { type: "string" },
        "ak-pub": { type: "string" },
        "log-only": { type: "boolean" },
      },
      true,
    );
    const dir = p.positionals[0];
    if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
    // --log-only checks no key chain: a key to pin there would be silently ignored.
    for (const k of ["ak-pub", "trust", "hsm-key"] as const)
      if (flag(p, "log-only") && str(p, k) !== undefined)
        throw usageError(`--${k} has no effect with --log-only`);
    const logOnly = flag(p, "log-only");
    const bundle = await readAuditBundle(dir, { keyChain: !logOnly });
    const pins = {
      ...(str(p, "vkey") !== undefined
        ? { vkey: new TextDecoder().decode(await readInput(str(p, "vkey")!, "vkey")) }
        : {}),
      ...(str(p, "origin") !== undefined ? { origin: str(p, "origin")! } : {}),
    };
    if (pins.vkey !== undefined && pins.vkey.trim().length === 0)
      throw usageError("no verifier key (give --vkey FILE)");
    // Root causes first: the inventory (missing and unknown files), then the key and origin.
    const failures: AuditFailure[] = [...bundle.inventory.failures];
    const keys = logKeys(bundle, pins, failures);
    if (keys === undefined) return finish(p, emptyReport(failures), bundle.inventory.unverified, "bundle");
    const [logKey, ...others] = keys.verifiers;
    const trustedNotes: { source: string; note: Uint8Array }[] = [];
    const trustedPaths = p.values["trusted-checkpoint"];
    for (const path of Array.isArray(trustedPaths) ? trustedPaths : [])
      trustedNotes.push({ source: path, note: await readInput(path, "checkpoint") });
    const segments = bundle.segments;
    const checkpointLog = bundle.checkpointLog ?? new Uint8Array(0);
    const bundleReport = verifyBundle({
      origin: keys.origin,
      logVerifier: logKey!,
      otherVerifiers: others,
      segments,
      checkpointLog,
      trustedCheckpointNotes: trustedNotes,
      ...(bundle.checkpointFile ? { checkpointFile: bundle.checkpointFile } : {}),
      // A progress line on a terminal for large bundles (stderr, so --json output stays clean).
      ...(process.stderr.isTTY
        ? {
            onProgress: (n: number) =>
              process.stderr.write(`\rverifying: ${n.toLocaleString("en-US")} entries`),
          }
        : {}),
    });
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    failures.push(
      ...bundleReport.failures,
      ...(await auditTiles(dir, segments, pathsOf(bundle.inventory, LOG_FILES.tile))),
    );
    const blobsRead = new Set<string>();
    const trustPath = str(p, "trust");
    const files = { origin: keys.origin, vkeys: [], segments, checkpointLog, blobNames: [] };
    const attestation = logOnly
      ? { failures: [], summary: { epochs: 0, verifiedEpochs: 0, allows: 0, tokensRedeemed: 0 } }
      : await auditKeysAndAttestation(dir, files, logKey!, {
          ...(str(p, "hsm-key")
            ? { hsmKeyPem: new TextDecoder().decode(await readInput(str(p, "hsm-key")!, "HSM key")) }
            : {}),
          ...(str(p, "ak-pub") ? { akPin: await readInput(str(p, "ak-pub")!, "AK public key") } : {}),
          ...(trustPath ? { trustPem: await trustAnchors(trustPath) } : {}),
          origin: keys.origin,
          blobsRead,
        });
    failures.push(...attestation.failures);
    // The blobs the log references were read and hashed above (policy_blob, evidence_blob);
    // every other one, and all of them with --log-only, is hashed here.
    const unread = pathsOf(bundle.inventory, LOG_FILES.blob).filter((p) => !blobsRead.has(p.slice(6)));
    failures.push(...(await auditBlobDigests(dir, unread)));
    // The latest checkpoint reported is the bundle's `checkpoint` file, verified as the latest.
    const { latestCheckpoint, ...logReport } = bundleReport;
    const report: VerifyReport = {
      ...logReport,
      ...(latestCheckpoint && bundle.checkpointFile ? { latestCheckpoint } : {}),
      ok: failures.length === 0,
      failures,
      attestation: attestation.summary,
      logKey: logKey!.vkey,
    };
    const hsmKeySource = "hsmKeySource" in attestation ? attestation.hsmKeySource : undefined;
    return finish(p, report, bundle.inventory.unverified, keys.source, hsmKeySource);
  },
};
