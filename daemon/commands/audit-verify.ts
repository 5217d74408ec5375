import { setFlagsFromString } from "node:v8";
import { type VerifyDirResult, type VerifyReport, verifyBundleDir } from "../../src/audit/verify-dir.js";
import { flag, type OptionSpec, type Parsed, parseCommandArgs, printJson, readInput, str } from "../args.js";
import { formatVerifyReport } from "../audit-report.js";
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
    const p = parseCommandArgs(argv, { json: { type: "boolean" }, ...VERIFY_OPTIONS }, true);
    const dir = p.positionals[0];
    if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
    // Each entry's garbage dies young; V8 would grow the young generation with the allocation
    // rate (RSS tracking the log's size), and a small fixed one keeps a long audit bounded.
    setFlagsFromString("--max-semi-space-size=4");
    setFlagsFromString("--semi-space-growth-factor=1");
    const v = await verifyDir(dir, p);
    return finish(p, v.report, v.unverified, v.keySource, v.hsmKeySource);
  },
};

/** The pinning flags of `audit verify`, which every command that verifies a bundle first accepts. */
export const VERIFY_OPTIONS = {
  vkey: { type: "string" },
  origin: { type: "string" },
  "trusted-checkpoint": { type: "string", multiple: true },
  trust: { type: "string" },
  "hsm-key": { type: "string" },
  "ak-pub": { type: "string" },
  "log-only": { type: "boolean" },
} as const satisfies OptionSpec;

/** What verifyDir returns: the report, the files left unverified, and where the keys came from. */
export type VerifyOutcome = VerifyDirResult;

/**
 * Everything `audit verify` checks, for bundle `dir` and the flags in `p` (VERIFY_OPTIONS): the
 * flags read here, the streaming verification in src/audit/verify-dir.ts.
 */
export async function verifyDir(dir: string, p: Parsed): Promise<VerifyOutcome> {
  // --log-only checks no key chain: a key to pin there would be silently ignored.
  for (const k of ["ak-pub", "trust", "hsm-key"] as const)
    if (flag(p, "log-only") && str(p, k) !== undefined)
      throw usageError(`--${k} has no effect with --log-only`);
  const logOnly = flag(p, "log-only");
  const pins = {
    ...(str(p, "vkey") !== undefined
      ? { vkey: new TextDecoder().decode(await readInput(str(p, "vkey")!, "vkey")) }
      : {}),
    ...(str(p, "origin") !== undefined ? { origin: str(p, "origin")! } : {}),
  };
  if (pins.vkey !== undefined && pins.vkey.trim().length === 0)
    throw usageError("no verifier key (give --vkey FILE)");
  const trustedNotes: { source: string; note: Uint8Array }[] = [];
  const trustedPaths = p.values["trusted-checkpoint"];
  for (const path of Array.isArray(trustedPaths) ? trustedPaths : [])
    trustedNotes.push({ source: path, note: await readInput(path, "checkpoint") });
  const trustPath = str(p, "trust");
  const r = await verifyBundleDir(dir, {
    logOnly,
    pins,
    trustedNotes,
    ...(str(p, "hsm-key")
      ? { hsmKeyPem: new TextDecoder().decode(await readInput(str(p, "hsm-key")!, "HSM key")) }
      : {}),
    ...(str(p, "ak-pub") ? { akPin: await readInput(str(p, "ak-pub")!, "AK public key") } : {}),
    ...(trustPath ? { trustPem: await trustAnchors(trustPath) } : {}),
    // A progress line per phase on a terminal (stderr, so --json output stays clean).
    ...(process.stderr.isTTY
      ? {
          onProgress: (phase: string, n: number) =>
            process.stderr.write(`\r\x1b[Kverifying ${phase}: ${n.toLocaleString("en-US")}`),
        }
      : {}),
  });
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  return r;
}
