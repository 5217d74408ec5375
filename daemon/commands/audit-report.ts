import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { explainEntry } from "../../src/audit/explore/index.js";
import { renderReport } from "../../src/audit/report/html.js";
import { checkGroups, failureLine, ReportModel } from "../../src/audit/report/model.js";
import { asExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import type { Checkpoint } from "../../src/lineage/checkpoint.js";
import type { MerkleTree } from "../../src/lineage/merkle.js";
import { flag, parseCommandArgs, readInput, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { VERIFY_OPTIONS, verifyDir } from "../commands/audit-verify.js";
import { EXIT, usageError } from "../exit.js";
import {
  BundleLookup,
  bundleEntries,
  bundleTree,
  inclusionOf,
  readLatestCheckpoint,
} from "../explore-bundle.js";

/**
 * `audit report`: one self-contained HTML file an auditor opens offline. The bundle is verified
 * first exactly as `audit verify` does; the report is written either way and shows the verdict
 * first, and the command exits 1 when the bundle does not verify.
 */

async function keyChain(dir: string): Promise<{ file: string; sha256: string; role: string }[]> {
  const roles: [RegExp, string][] = [
    [/^ek-cert-/, "EK certificate → trust anchors (ek_chain, ek_cert_key)"],
    [/^ek\.pub$/, "the EK the certificate certifies (ek)"],
    [/^ak\./, "the AK (ak, ak_pin); signs the quotes and certifies the signing key"],
    [/^signing-key\.certify/, "TPM2_Certify of the signing key by the AK (signing_key_certify)"],
    [/^signing-key\./, "the checkpoint signing key (signing_key, log_key)"],
    [/^hsm-key/, "the HSM root key (hsm_key)"],
  ];
  let names: string[];
  try {
    names = (await readdir(join(dir, "enrollment"))).sort();
  } catch {
    return [];
  }
  const out: { file: string; sha256: string; role: string }[] = [];
  for (const n of names) {
    const role = roles.find(([re]) => re.test(n))?.[1] ?? "";
    const bytes = await readFile(join(dir, "enrollment", n));
    out.push({ file: `enrollment/${n}`, sha256: createHash("sha256").update(bytes).digest("hex"), role });
  }
  return out;
}

async function optionalText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

export const command: Command = {
  summary: "write one self-contained, offline HTML report of a bundle: verdict, timeline, denials, proofs",
  usage:
    "DIR --out FILE.html [VERIFY FLAGS]\n" +
    "  The bundle is verified first as `audit verify` does, with its flags (--trust CA.pem, --ak-pub,\n" +
    "  --hsm-key, --vkey, --origin, --trusted-checkpoint, or --log-only). The report shows that verdict\n" +
    "  first (every check, the first failure), a timeline of daemon runs and epochs with executions\n" +
    "  and denials, denials by reason with who and why, executors, a proof viewer for any entry (its\n" +
    "  inclusion path and the checkpoint signature re-verified in the page with WebCrypto), and search.\n" +
    "  The file has no external resource and a Content-Security-Policy that forbids any request.\n" +
    "Exit: 0 the bundle verifies and the report is written, 1 the bundle does not verify (the report\n" +
    "  is still written, showing FAIL), 2 usage, 3 unreadable bundle or unwritable --out.",
  async run(argv) {
    const p = parseCommandArgs(argv, { out: { type: "string" }, ...VERIFY_OPTIONS }, true);
    const dir = p.positionals[0];
    if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
    const outPath = str(p, "out");
    if (outPath === undefined) throw usageError("--out FILE.html is required");

    const v = await verifyDir(dir, p);
    const failures = v.report.failures;
    const latest = readLatestCheckpoint(dir);
    const cp: Checkpoint = latest.checkpoint;
    const vkeyPath = str(p, "vkey");
    const vkey = vkeyPath
      ? new TextDecoder().decode(await readInput(vkeyPath, "vkey"))
      : await optionalText(join(dir, "log.vkey"));

    const model = new ReportModel();
    let tree: MerkleTree | undefined;
    let treeError: string | undefined;
    try {
      tree = await bundleTree(dir);
    } catch (e) {
      treeError = asExecgateError(e).message;
    }
    const lookup = new BundleLookup(dir);
    try {
      for await (const { index, bytes } of bundleEntries(dir)) {
        lookup.saw(index, bytes);
        const inc = tree ? inclusionOf(tree, index, bytes, cp) : undefined;
        const proof = inc
          ? { ok: inc.verified, path: inc.path, ...(inc.reason ? { why: inc.reason } : {}) }
          : { ok: false, path: [], why: treeError ?? "no tree" };
        try {
          model.observe(explainEntry(index, bytes, lookup.lookup), bytes, proof);
        } catch (e) {
          model.undecodable(index, bytes, asExecgateError(e).message, proof);
        }
      }
    } catch (e) {
      // A segment that does not parse ends the entries shown; audit verify lists it as a failure.
      model.undecodable(
        model.rows.length,
        new Uint8Array(0),
        `segments: ${asExecgateError(e).message}`,
        undefined,
      );
    }

    const ok = v.report.ok;
    const logOnly = flag(p, "log-only");
    const key =
      v.keySource === "bundle" ? "log key from the bundle (no --vkey)" : "log key pinned with --vkey";
    const payload = {
      generated: {
        by: `execgate audit report${logOnly ? " --log-only" : ""}`,
        entries: v.report.entries,
        key,
      },
      verdict: {
        ok,
        checks: checkGroups(failures, logOnly),
        failures: failures.map((f) => ({
          line: failureLine(f),
          check: f.check,
          ...(f.index !== undefined ? { index: f.index } : {}),
        })),
      },
      checkpoint: {
        origin: cp.origin,
        size: cp.size,
        root: toHex(cp.rootHash),
        note: latest.note,
        ...(vkey !== undefined ? { vkey: vkey.trim() } : {}),
        vkeyPinned: vkeyPath !== undefined,
      },
      keychain: await keyChain(dir),
      ...model.data(),
    };
    await writeOutput(outPath, renderReport(`${basename(dir)}: ${ok ? "PASS" : "FAIL"}`, payload), "report");
    process.stderr.write(
      `${ok ? "verified" : "FAILED: the bundle does not verify"}: ${v.report.entries} entries; report written to ${outPath}\n`,
    );
    return ok ? EXIT.ok : EXIT.failed;
  },
};
