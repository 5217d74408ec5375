import type { Socket } from "node:net";
import type { CborValue } from "../src/cbor/index.js";
import type { DenialCode, DenialReason } from "../src/core/denial.js";
import { ExecgateError } from "../src/core/errors.js";
import type { Gate } from "../src/gate/gate.js";
import { type ImaExeDigestHook, identifyPeer, type PeerIdentity, peerUid } from "../src/peer/index.js";
import type { RequestHandler } from "../src/server/server.js";
import { errorReply, okReply } from "../src/wire/reply.js";
import type { Request } from "../src/wire/request.js";

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
): ImaExeDigestHook {
  let refreshedAt = Number.NEGATIVE_INFINITY;
  /** When each refused (path, digest) last started an epoch: one that never clears, once a minute. */
  const lastTry = new Map<string, number>();
  return async ({ exe, exeSha256 }) => {
    const digests = measurements(exe);
    if (digests === undefined) return undefined;
    if (!digests.has(exeSha256)) {
      // An early epoch at most once a second overall, and once a minute for the same file.
      const now = performance.now();
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

/** Maps protocol operations onto the gate and encodes the replies (docs/protocol.md). */
export function gateHandler(
  gate: Gate,
  evidence: (epoch: Uint8Array | undefined) => Record<string, CborValue> | undefined,
  exportBundle?: () => Promise<{ path: string; size: number }>,
  imaExeDigest?: ImaExeDigestHook,
): RequestHandler {
  return {
    identify: (socket: Socket, signal: AbortSignal): Promise<PeerIdentity> =>
      identifyPeer(socket, { signal, ...(imaExeDigest ? { imaExeDigest } : {}) }),
    peerUid: (socket: Socket) => peerUid(socket),
    rejected(peer: PeerIdentity | undefined, reason: DenialReason, detail: string, code?: DenialCode): void {
      void gate.recordDenial(peer, reason, detail, [], code);
    },
    async handle(peer: PeerIdentity, req: Request): Promise<Uint8Array> {
      switch (req.op) {
        case "token.request": {
          const r = await gate.requestToken(peer, req.args);
          return r.ok
            ? okReply(req.id, { token: r.value.token, token_id: r.value.tokenId, expires: r.value.expires })
            : errorReply(req.id, "denied", r.reason);
        }
        case "token.redeem": {
          const r = await gate.redeem(peer, req.args.token);
          return r.ok
            ? okReply(req.id, { token_id: r.value.tokenId, scope: r.value.scope, action: r.value.action })
            : errorReply(req.id, "denied", r.reason);
        }
        case "execution.report": {
          const r = await gate.report(peer, req.args);
          return r.ok ? okReply(req.id, {}) : errorReply(req.id, "denied", r.reason);
        }
        case "status":
          return okReply(req.id, gate.status());
        case "lineage.export": {
          // Operators only: root or the daemon's own user.
          if (!exportBundle || (peer.uid !== 0 && peer.uid !== process.getuid?.())) {
            await gate.recordDenial(peer, "peer_unknown", "lineage export is for root or the daemon user");
            return errorReply(req.id, "denied", "peer_unknown");
          }
          try {
            const r = await exportBundle();
            return okReply(req.id, { path: r.path, size: r.size });
          } catch (e) {
            await gate.recordDenial(peer, "lineage_unavailable", `export failed: ${String(e)}`);
            return errorReply(req.id, "denied", "lineage_unavailable");
          }
        }
        case "evidence": {
          const ev = evidence(req.args.epoch);
          if (ev) return okReply(req.id, ev);
          await gate.recordDenial(
            peer,
            "attestation_missing",
            "evidence asked for an epoch this run does not have",
          );
          return errorReply(req.id, "denied", "attestation_missing");
        }
      }
    },
  };
}
