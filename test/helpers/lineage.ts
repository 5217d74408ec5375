import { type AuditReport, verifyBundle } from "../../src/audit/verify.js";
import { type BundleFiles, readBundle } from "../../src/lineage/export.js";
import { parseVerifierKey } from "../../src/lineage/note.js";

/** Reads an exported bundle and verifies its log with the vkey it carries. */
export async function verifyExported(dir: string): Promise<{ files: BundleFiles; report: AuditReport }> {
  const files = await readBundle(dir);
  const report = verifyBundle({
    origin: files.origin,
    logVerifier: parseVerifierKey(files.vkeys[0]!),
    segments: files.segments,
    checkpointLog: files.checkpointLog,
  });
  return { files, report };
}
