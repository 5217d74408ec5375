import { verifyBundle } from "../../src/audit/verify.js";
import { type Checkpoint, parseCheckpoint } from "../../src/lineage/checkpoint.js";
import { readBundle } from "../../src/lineage/export.js";
import { parseNote, parseVerifierKey } from "../../src/lineage/note.js";
import { flag, parseCommandArgs, printJson, readInput, str } from "../args.js";
import { auditKeysAndAttestation } from "../audit-files.js";
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
    "Checks the log (segments, entries, back-references, tree, checkpoints, consistency), then the key\n" +
    "chain (EK certificate → trust anchors; AK; the AK-certified checkpoint key signs the checkpoints)\n" +
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
    const files = await readBundle(dir);
    const vkeyPath = str(p, "vkey");
    const vkeyText =
      vkeyPath === undefined
        ? files.vkeys.join("\n")
        : new TextDecoder().decode(await readInput(vkeyPath, "vkey"));
    const vkeys = vkeyText.split("\n").filter((l) => l.trim().length > 0);
    if (vkeys.length === 0) throw usageError("no verifier key (give --vkey FILE)");
    const [logKey, ...others] = vkeys.map((k) => parseVerifierKey(k.trim()));
    const trustedPaths = p.values["trusted-checkpoint"];
    const trusted: Checkpoint[] = [];
    for (const path of Array.isArray(trustedPaths) ? trustedPaths : []) {
      // Checkpoints the auditor kept are trusted as given; their signatures were checked back then.
      trusted.push(parseCheckpoint(parseNote(await readInput(path, "checkpoint")).text));
    }
    const bundleReport = verifyBundle({
      origin: str(p, "origin") ?? files.origin,
      logVerifier: logKey!,
      otherVerifiers: others,
      segments: files.segments,
      checkpointLog: files.checkpointLog,
      trustedCheckpoints: trusted,
      // A progress line on a terminal for large bundles (stderr, so --json output stays clean).
      ...(process.stderr.isTTY
        ? {
            onProgress: (n: number) =>
              process.stderr.write(`\rverifying: ${n.toLocaleString("en-US")} entries`),
          }
        : {}),
    });
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    const trustPath = str(p, "trust");
    const attestation = flag(p, "log-only")
      ? { failures: [], summary: { epochs: 0, verifiedEpochs: 0, allows: 0, tokensRedeemed: 0 } }
      : await auditKeysAndAttestation(dir, files, logKey!, {
          ...(str(p, "hsm-key")
            ? { hsmKeyPem: new TextDecoder().decode(await readInput(str(p, "hsm-key")!, "HSM key")) }
            : {}),
          ...(str(p, "ak-pub") ? { akPin: await readInput(str(p, "ak-pub")!, "AK public key") } : {}),
          ...(trustPath ? { trustPem: await trustAnchors(trustPath) } : {}),
          origin: str(p, "origin") ?? files.origin,
        });
    const report = {
      ...bundleReport,
      ok: bundleReport.ok && attestation.failures.length === 0,
      failures: [...bundleReport.failures, ...attestation.failures],
      attestation: attestation.summary,
    };
    const keySource = vkeyPath === undefined ? "bundle" : "argument";
    const hsmKeySource = "hsmKeySource" in attestation ? attestation.hsmKeySource : undefined;
    if (flag(p, "json")) {
      printJson({ ...report, keySource, ...(hsmKeySource ? { hsmKeySource } : {}) });
    } else {
      const lines = [
        `${report.ok ? "OK" : "FAILED"}: ${report.entries} entries, root ${report.root}`,
        `checkpoints verified: ${report.checkpointsVerified}` +
          (report.latestCheckpoint ? `, latest size ${report.latestCheckpoint.size}` : ""),
        `attestation: ${report.attestation.verifiedEpochs}/${report.attestation.epochs} epochs verified, ${report.attestation.allows} allows, ${report.attestation.tokensRedeemed} tokens redeemed`,
        `log key: ${logKey!.vkey} (from the ${keySource}${keySource === "bundle" ? "; pass --vkey to pin it" : ""})`,
        // Like the log key, an HSM key the bundle brings vouches only for itself.
        ...(hsmKeySource === "bundle"
          ? ["HSM key: enrollment/hsm-key.pem (from the bundle; pass --hsm-key to pin it)"]
          : hsmKeySource === "argument"
            ? ["HSM key: from the argument (--hsm-key)"]
            : []),
        ...report.failures.map(
          (f) =>
            `  ${f.check}${f.index !== undefined ? ` entry ${f.index}` : ""}` +
            `${f.checkpoint !== undefined ? ` checkpoint #${f.checkpoint}` : ""}` +
            `${f.segment !== undefined ? ` (${f.segment})` : ""}: ${f.reason}`,
        ),
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return report.ok ? EXIT.ok : EXIT.failed;
  },
};
