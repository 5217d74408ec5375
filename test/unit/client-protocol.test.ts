import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { encode } from "../../src/cbor/index.js";
import {
  DEFAULT_SOCKET_PATH,
  defaultSocketPath,
  ExecgateClient,
  ExecgateDenied,
  ExecgateReplyError,
} from "../../src/client/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame } from "../../src/wire/frame.js";
import { errorReply } from "../../src/wire/reply.js";
import { actionDigest, type Request } from "../../src/wire/request.js";
import {
  type FakeDaemon,
  type FakeHandler,
  grantingHandler,
  startFakeDaemon,
} from "../helpers/fake-daemon.js";

let daemon: FakeDaemon | undefined;
let client: ExecgateClient | undefined;

afterEach(async () => {
  await client?.close();
  await daemon?.close();
  client = undefined;
  daemon = undefined;
});

async function setup(handler: FakeHandler, timeoutMs?: number): Promise<ExecgateClient> {
  daemon = await startFakeDaemon(handler);
  client = await ExecgateClient.connect(daemon.path, timeoutMs === undefined ? {} : { timeoutMs });
  return client;
}

function codeOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => "resolved",
    (e: unknown) => (e instanceof ExecgateError ? e.code : e),
  );
}

describe("ExecgateClient framing", () => {
  it("pipelines requests and matches replies by id, whatever their order", async () => {
    const held: Request[] = [];
    const c = await setup((req, conn) => {
      held.push(req);
      if (held.length < 3) return;
      for (const r of [...held].reverse()) conn.ok(r.id, { echo: r.id });
    });
    const replies = await Promise.all([c.status(), c.status(), c.status()]);
    const ids = daemon!.requests.map((r) => r.id);
    expect(new Set(ids).size).toBe(3);
    expect(replies.map((m) => m.get("echo"))).toEqual(ids);
    expect(daemon!.rejected).toEqual([]);
  });

  it("reassembles a reply that arrives one byte at a time", async () => {
    const c = await setup((req, conn) => {
      const frame = encodeFrame(encode({ v: 1, id: req.id, ok: true, result: { state: "ready" } }));
      for (const b of frame) conn.raw(Uint8Array.of(b));
    });
    expect((await c.status()).get("state")).toBe("ready");
  });

  it("a denial throws ExecgateDenied carrying the reason", async () => {
    const c = await setup((req, conn) => conn.error(req.id, "denied", "attestation_stale"));
    const e = await c.requestToken({ scope: "gpu", argv: ["true"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ExecgateDenied);
    expect(e).toBeInstanceOf(ExecgateError);
    expect((e as ExecgateDenied).reason).toBe("attestation_stale");
    expect(c.closed).toBe(false);
  });

  it("a denial with a reason this client does not know is still a denial", async () => {
    const c = await setup((req, conn) =>
      conn.raw(encodeFrame(encode({ v: 1, id: req.id, ok: false, error: "denied", reason: "moon_phase" }))),
    );
    const e = await c.status().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ExecgateDenied);
    expect((e as ExecgateDenied).reason).toBe("internal_error");
    expect((e as ExecgateDenied).detail.unknownReason).toBe("moon_phase");
  });

  it("other error replies throw ExecgateReplyError with a mapped code", async () => {
    const c = await setup((req, conn) =>
      req.op === "status"
        ? conn.error(req.id, "busy")
        : conn.error(req.id, "bad_request", "request_malformed"),
    );
    const e = await c.status().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ExecgateReplyError);
    expect(e).toMatchObject({ code: "io_error", replyError: "busy" });
    const b = await c.evidence().catch((x: unknown) => x);
    expect(b).toMatchObject({
      code: "malformed",
      replyError: "bad_request",
      detail: { reason: "request_malformed" },
    });
  });

  it("refuses an oversized reply from its header and fails everything in flight", async () => {
    const c = await setup((req, conn) => {
      if (req.op !== "evidence") return; // status stays in flight
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, DEFAULT_MAX_FRAME_BYTES + 1, false);
      conn.raw(header);
    });
    const inFlight = codeOf(c.status());
    expect(await codeOf(c.evidence())).toBe("limit_exceeded");
    expect(await inFlight).toBe("limit_exceeded");
    expect(c.closed).toBe(true);
    expect(await codeOf(c.status())).toBe("io_error");
  });

  it("the daemon closing mid-request is io_error", async () => {
    const c = await setup((_req, conn) => {
      conn.raw(Uint8Array.of(0, 0, 0, 40, 0xa1)); // part of a frame, then gone
      conn.close();
    });
    expect(await codeOf(c.redeem(Uint8Array.of(1, 2, 3)))).toBe("io_error");
    expect(c.closed).toBe(true);
  });

  it("a request without a reply times out; its late reply is dropped and the connection lives on", async () => {
    let first: Request | undefined;
    const c = await setup((req, conn) => {
      if (first === undefined) {
        first = req;
        return;
      }
      conn.ok(first.id, { late: true });
      conn.ok(req.id, { state: "ready" });
    }, 50);
    expect(await codeOf(c.status())).toBe("timeout");
    const second = await c.status();
    expect(second.get("state")).toBe("ready");
    expect(c.closed).toBe(false);
  });

  it("a reply to an id never sent ends the connection", async () => {
    const c = await setup((req, conn) => conn.ok(req.id + 1000, {}));
    expect(await codeOf(c.status())).toBe("malformed");
    expect(c.closed).toBe(true);
  });

  it("a reply that is not a v1 reply map ends the connection", async () => {
    const c = await setup((req, conn) => conn.raw(encodeFrame(encode({ v: 2, id: req.id, ok: true }))));
    expect(await codeOf(c.status())).toBe("unsupported");
  });

  it("a connection the daemon refuses up front (id 0) fails later requests with that refusal", async () => {
    daemon = await startFakeDaemon(
      () => {},
      (conn) => {
        conn.error(0, "denied", "peer_unknown");
        conn.close();
      },
    );
    client = await ExecgateClient.connect(daemon.path);
    const c = client;
    await new Promise<void>((resolve) => {
      const poll = (): void => (c.closed ? resolve() : void setImmediate(poll));
      poll();
    });
    const e = await c.requestToken({ scope: "gpu", argv: ["true"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ExecgateDenied);
    expect((e as ExecgateDenied).reason).toBe("peer_unknown");
  });

  it("busy at connect is an io_error-class refusal", async () => {
    daemon = await startFakeDaemon(
      () => {},
      (conn) => {
        conn.error(0, "busy");
        conn.close();
      },
    );
    client = await ExecgateClient.connect(daemon.path);
    const e = await client.status().catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "io_error" });
  });

  it("connecting where nothing listens is io_error", async () => {
    daemon = await startFakeDaemon(() => {});
    const missing = join(daemon.path, "..", "nothing.sock");
    const e = await ExecgateClient.connect(missing).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "io_error" });
    expect((e as ExecgateError).detail.errno).toBe("ENOENT");
    const notSocket = join(daemon.path, "..", "plain-file");
    writeFileSync(notSocket, "");
    expect(await codeOf(ExecgateClient.connect(notSocket))).toBe("io_error");
  });

  it("a request the daemon's schema refuses comes back as bad_request → malformed", async () => {
    const c = await setup(() => {});
    const e = await c.requestToken({ scope: "no spaces allowed", argv: ["x"] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "malformed", replyError: "bad_request" });
    expect(daemon!.rejected.length).toBe(1);
    expect(c.closed).toBe(false);
  });

  it("an error reply with id 0 (the daemon could not read an id) fails everything in flight", async () => {
    const c = await setup((req, conn) => {
      if (req.op === "evidence") conn.raw(encodeFrame(errorReply(0, "bad_request")));
    });
    const held = codeOf(c.status());
    expect(await codeOf(c.evidence())).toBe("malformed");
    expect(await held).toBe("malformed");
    expect(c.closed).toBe(true);
  });
});

describe("ExecgateClient operations", () => {
  it("request, redeem, report: the daemon sees the fixed request schema", async () => {
    const { handler } = grantingHandler(["gpu"]);
    const c = await setup(handler);
    const nonce = Uint8Array.from({ length: 16 }, (_, i) => i);
    const t = await c.requestToken({ scope: "gpu", argv: ["nvidia-smi", "-L"], nonce, audience: "host-a" });
    expect(t.tokenId.length).toBe(16);
    expect(t.expiresAt).toBe(2_000_000_000);
    const r = await c.redeem(t.token);
    expect(r).toEqual({ tokenId: t.tokenId, scope: "gpu", action: actionDigest(["nvidia-smi", "-L"]) });
    await c.report({ tokenId: t.tokenId, exitStatus: 3, durationMs: 12, outputs: [new Uint8Array(32)] });
    const byAction = await c.requestToken({ scope: "gpu", action: new Uint8Array(32).fill(7) });
    expect(byAction.token.length).toBe(48);

    const [req, , rep, act] = daemon!.requests;
    expect(req).toMatchObject({
      op: "token.request",
      args: { scope: "gpu", argv: ["nvidia-smi", "-L"], nonce, audience: "host-a" },
    });
    expect(rep).toMatchObject({
      op: "execution.report",
      args: { tokenId: t.tokenId, exitStatus: 3, durationMs: 12, outputs: [new Uint8Array(32)] },
    });
    expect(act).toMatchObject({ op: "token.request", args: { action: new Uint8Array(32).fill(7) } });
    expect(act?.op === "token.request" ? act.args.argv : "other op").toBeUndefined();
    expect(daemon!.rejected).toEqual([]);
    // Single use, as the daemon enforces it.
    expect(await c.redeem(t.token).catch((e: ExecgateDenied) => e.reason)).toBe("token_replayed");
  });

  it("a result missing a field or with a wrong size is malformed", async () => {
    const c = await setup((req, conn) =>
      conn.ok(req.id, { token: new Uint8Array(4), token_id: new Uint8Array(8) }),
    );
    expect(await codeOf(c.requestToken({ scope: "gpu", argv: ["true"] }))).toBe("malformed");
    expect(c.closed).toBe(false);
  });

  it("status keys must be text; unknown result fields are ignored", async () => {
    const c = await setup((req, conn) =>
      req.op === "status"
        ? conn.raw(encodeFrame(encode({ v: 1, id: req.id, ok: true, result: new Map([[1, "x"]]) })))
        : conn.ok(req.id, { token_id: new Uint8Array(16), scope: "s", action: new Uint8Array(32), extra: 1 }),
    );
    expect(await codeOf(c.status())).toBe("malformed");
    expect((await c.redeem(Uint8Array.of(1))).scope).toBe("s");
  });

  it("a request too large for a frame is refused before sending", async () => {
    const c = await setup(() => {});
    const argv = Array.from({ length: 200 }, () => "x".repeat(400));
    expect(await codeOf(c.requestToken({ scope: "gpu", argv }))).toBe("limit_exceeded");
    expect(daemon!.requests).toEqual([]);
  });

  it("close() fails requests in flight with io_error", async () => {
    const c = await setup(() => {});
    const p = codeOf(c.status());
    await c.close();
    expect(await p).toBe("io_error");
  });
});

describe("defaultSocketPath", () => {
  it("EXECGATE_SOCKET when set, else the system path", () => {
    expect(defaultSocketPath({ EXECGATE_SOCKET: "/tmp/x.sock" })).toBe("/tmp/x.sock");
    expect(defaultSocketPath({ EXECGATE_SOCKET: "" })).toBe(DEFAULT_SOCKET_PATH);
    expect(defaultSocketPath({})).toBe("/run/execgate/execgate.sock");
  });
});
