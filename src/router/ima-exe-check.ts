import { ExecgateError } from "../core/errors.js";
import type { ImaExeDigestHook } from "../peer/index.js";

/**
 * The IMA check of a caller's executable: when IMA measured files at the executable's path this
 * boot (as far as a verified quote covers the list), the file must be one of them, else
 * identification fails (peer_unknown) and an epoch is started at once, so an executable
 * replaced in place is accepted as soon as that epoch covers its new measurement. Without such
 * measurements the file's own SHA-256 stands alone (docs/protocol.md).
 */
export function imaExeCheck(
  measurements: (path: string) => ReadonlySet<string> | undefined,
  refresh: () => void,
  nowMs: () => number = () => performance.now(),
): ImaExeDigestHook {
  let refreshedAt = Number.NEGATIVE_INFINITY;
  /** When each refused (path, digest) last started an epoch: one that never clears, once a minute. */
  const lastTry = new Map<string, number>();
  return async ({ exe, exeSha256 }) => {
    const digests = measurements(exe);
    if (digests === undefined) return undefined;
    if (!digests.has(exeSha256)) {
      // An early epoch at most once a second overall, and once a minute for the same file.
      const now = nowMs();
      const key = `${exeSha256} ${exe}`;
      if (now - refreshedAt >= 1000 && now - (lastTry.get(key) ?? Number.NEGATIVE_INFINITY) >= 60_000) {
        refreshedAt = now;
        if (lastTry.size >= 1024) lastTry.clear();
        lastTry.set(key, now);
        refresh();
      }
      throw new ExecgateError(
        "verification_failed",
        `executable ${exe} (sha256 ${exeSha256}) is not among IMA's quoted measurements of that path; retry after the next epoch`,
        { check: "peer_exe_ima_mismatch" },
      );
    }
    return { algorithm: "sha256", digest: exeSha256 };
  };
}
