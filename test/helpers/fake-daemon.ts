import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CborValue } from "../../src/cbor/index.js";
import type { DenialReason } from "../../src/core/denial.js";
import { isExecgateError } from "../../src/core/errors.js";
import { encodeFrame, FrameDecoder } from "../../src/wire/frame.js";
import { errorReply, okReply, type ReplyError } from "../../src/wire/reply.js";
import { parseRequest, peekRequestId, type Request } from "../../src/wire/request.js";

/*
 * A minimal in-test server speaking the socket protocol, ONLY for testing the client's framing,
 * id matching and error handling (and `execgate run` as a process against it). It parses what
 * the client sends with the real parseRequest, so a client that strays from the schema shows up
 * in `rejected`. It is not the daemon: no policy, no attestation, no lineage.
 */

export interface FakeConnection {
  ok(id: number, result: Record<string, CborValue | undefined>): void;
  error(id: number, error: ReplyError, reason?: DenialReason): void;
  /** Writes bytes as they are, no framing (for oversized or broken frames). */
  raw(bytes: Uint8Array): void;
  close(): void;
}

export type FakeHandler = (req: Request, conn: FakeConnection) => void | Promise<void>;

export interface FakeDaemon {
  readonly path: string;
  /** Every request that parsed, in arrival order. */
  readonly requests: Request[];
  /** Frames parseRequest refused (answered with bad_request). */
  readonly rejected: Uint8Array[];
  close(): Promise<void>;
}

/** `onConnect` runs for each accepted connection before any byte is read (e.g. to refuse it). */
export async function startFakeDaemon(
  handler: FakeHandler,
  onConnect?: (conn: FakeConnection) => void,
): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), "execgate-fake-"));
  const path = join(dir, "execgate.sock");
  const requests: Request[] = [];
  const rejected: Uint8Array[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    const conn: FakeConnection = {
      ok: (id, result) => {
        if (!s.destroyed) s.write(encodeFrame(okReply(id, result)));
      },
      error: (id, error, reason) => {
        if (!s.destroyed) s.write(encodeFrame(errorReply(id, error, reason)));
      },
      raw: (bytes) => {
        if (!s.destroyed) s.write(bytes);
      },
      // Flush what was written, then go: the client sees the replies, then the close.
      close: () => s.end(() => s.destroy()),
    };
    onConnect?.(conn);
    const decoder = new FrameDecoder();
    s.on("data", (chunk: Buffer) => {
      let frames: Uint8Array[];
      try {
        frames = decoder.push(new Uint8Array(chunk));
      } catch {
        s.destroy();
        return;
      }
      for (const f of frames) {
        let req: Request;
        try {
          req = parseRequest(f);
        } catch (e) {
          rejected.push(f);
          const v = isExecgateError(e, "unsupported") && e.detail.op === undefined;
          conn.error(peekRequestId(f), v ? "unsupported_version" : "bad_request");
          continue;
        }
        requests.push(req);
        void handler(req, conn);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    requests,
    rejected,
    close: async () => {
      for (const s of sockets) s.end(() => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface IssuedRecord {
  readonly tokenId: Uint8Array;
  readonly scope: string;
  readonly action: Uint8Array;
  redeemed: boolean;
}

/**
 * A handler that grants tokens for `allowScopes` and denies anything else with `denyReason`
 * (default scope_not_allowed). Tokens are 0xd2 + random bytes here (real ones are COSE_Sign1);
 * redemption is single-use like the daemon's.
 */
export function grantingHandler(
  allowScopes: readonly string[],
  denyReason: DenialReason = "scope_not_allowed",
): { handler: FakeHandler; issued: Map<string, IssuedRecord> } {
  const issued = new Map<string, IssuedRecord>();
  const handler: FakeHandler = (req, conn) => {
    switch (req.op) {
      case "token.request": {
        if (!allowScopes.includes(req.args.scope)) return conn.error(req.id, "denied", denyReason);
        // 0xd2 first, like a real tagged COSE_Sign1: base64url then never starts with "-".
        const token = Uint8Array.of(0xd2, ...randomBytes(47));
        const rec = {
          tokenId: new Uint8Array(randomBytes(16)),
          scope: req.args.scope,
          action: req.args.action,
        };
        issued.set(Buffer.from(token).toString("hex"), { ...rec, redeemed: false });
        return conn.ok(req.id, { token, token_id: rec.tokenId, expires: 2_000_000_000 });
      }
      case "token.redeem": {
        const rec = issued.get(Buffer.from(req.args.token).toString("hex"));
        if (!rec) return conn.error(req.id, "denied", "token_malformed");
        if (rec.redeemed) return conn.error(req.id, "denied", "token_replayed");
        rec.redeemed = true;
        return conn.ok(req.id, { token_id: rec.tokenId, scope: rec.scope, action: rec.action });
      }
      case "execution.report":
        return conn.ok(req.id, {});
      case "status":
        return conn.ok(req.id, {
          state: "ready",
          epoch: 7,
          evidence_age_ms: 120,
          counters: { issued: 3 },
          denials: {},
        });
      case "evidence":
        return conn.ok(req.id, { pcr_digest: new Uint8Array(32) });
    }
  };
  return { handler, issued };
}
