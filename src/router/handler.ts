import type { Socket } from "node:net";
import type { CborValue } from "../cbor/index.js";
import type { DenialCode, DenialReason } from "../core/denial.js";
import type { Gate } from "../gate/gate.js";
import { type ImaExeDigestHook, identifyPeer, type PeerIdentity, peerUid } from "../peer/index.js";
import type { RequestHandler } from "../server/server.js";
import { errorReply, okReply } from "../wire/reply.js";
import type { Request } from "../wire/request.js";

/** lineage.export is for operators only: root or the daemon's own user. */
export function mayExport(peerUid: number, daemonUid: number | undefined): boolean {
  return peerUid === 0 || peerUid === daemonUid;
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
          if (!exportBundle || !mayExport(peer.uid, process.getuid?.())) {
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
