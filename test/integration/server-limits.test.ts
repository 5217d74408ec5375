import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { decode } from "../../src/cbor/index.js";
import type { DenialCode, DenialReason } from "../../src/core/denial.js";
import { ExecgateError } from "../../src/core/errors.js";
import { identifyPeer, type PeerIdentity, peerUid } from "../../src/peer/index.js";
import { MAX_UNSENT_REPLY_BYTES } from "../../src/server/connection.js";
import { listenUnix } from "../../src/server/listen.js";
import { GateServer, type RequestHandler, type ServerLimits } from "../../src/server/server.js";
import { encodeFrame, FrameDecoder } from "../../src/wire/frame.js";
import { errorReply, okReply } from "../../src/wire/reply.js";
import { encodeRequest, type Request } from "../../src/wire/request.js";

/*
 * GateServer on a real Unix socket (listenUnix, pauseOnConnect as in the daemon), real clients,
 * and by default the real peer identification. Only the gate behind `handle` is a stand-in: these
 * tests are about connections, limits and deadlines, not decisions.
 */

const SYSTEM_PYTHON = "/usr/bin/python3.11";

interface Recorded {
  readonly peer: PeerIdentity | undefined;
  readonly reason: DenialReason;
  readonly detail: string;
  readonly code: DenialCode | undefined;
}

interface TestServer {
  readonly path: string;
  readonly gate: GateServer;
  readonly recorded: Recorded[];
  readonly handled: Request[];
  /** Milliseconds the server reads as now (monotonic in the daemon); tests move it by hand. */
  nowMs: number;
}

const LIMITS: ServerLimits = {
  maxFrameBytes: 64 * 1024,
  maxConnections: 16,
  readTimeoutMs: 5000,
  idleTimeoutMs: 600_000,
  requestsPerSecondPerUid: 1000,
  burstPerUid: 1000,
};

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(
  limits: Partial<ServerLimits> = {},
  handler: Partial<RequestHandler> = {},
): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), "execgate-server-"));
  const recorded: Recorded[] = [];
  const handled: Request[] = [];
  const t: { -readonly [K in keyof TestServer]: TestServer[K] } = {
    path: join(dir, "s.sock"),
    recorded,
    handled,
    nowMs: 1_000_000,
    gate: undefined as unknown as GateServer,
  };
  t.gate = new GateServer(
    {
      identify: (socket, signal) => identifyPeer(socket, { signal }),
      handle: async (_peer, req) => {
        handled.push(req);
        return okReply(req.id, {});
      },
      rejected: (peer, reason, detail, code) => recorded.push({ peer, reason, detail, code }),
      ...handler,
    },
    { ...LIMITS, ...limits },
    pino({ level: "silent" }),
    () => t.nowMs,
  );
  const server: Server = await listenUnix(t.path, { mode: 0o600, onConnection: t.gate.onConnection });
  cleanups.push(async () => {
    await t.gate.close(server);
    await rm(dir, { recursive: true, force: true });
  });
  return t;
}

/** A raw client: what it sends is up to the test; replies are collected as decoded maps. */
interface RawClient {
  readonly socket: Socket;
  readonly replies: Map<string, unknown>[];
  readonly closed: Promise<void>;
  isClosed(): boolean;
}

/**
 * `read`: false pauses the socket. `halfOpen`: the client does not close its side when the
 * daemon closes its own (as a client that never closes: the daemon's socket stays open).
 */
async function rawClient(path: string, read = true, halfOpen = false): Promise<RawClient> {
  const socket = connect({ path, allowHalfOpen: halfOpen });
  const replies: Map<string, unknown>[] = [];
  const decoder = new FrameDecoder(1 << 20);
  let isClosed = false;
  socket.on("data", (b: Buffer) => {
    for (const f of decoder.push(new Uint8Array(b))) replies.push(decode(f) as Map<string, unknown>);
  });
  // Writing to a connection the daemon closed fails (EPIPE) before "close": events.once would
  // reject on that error, so "close" is awaited with a plain listener.
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      isClosed = true;
      resolve();
    }),
  );
  if (!read) socket.pause();
  await once(socket, "connect");
  cleanups.push(async () => {
    socket.destroy();
  });
  return { socket, replies, closed, isClosed: () => isClosed };
}

const request = (id: number, op = "status") => encodeFrame(encodeRequest(id, op, {}));

async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const end = performance.now() + ms;
  while (!f()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until `f()` has not changed for a few polls: the server has done all it will do. */
async function settled(f: () => number): Promise<number> {
  let last = f();
  for (let quiet = 0; quiet < 5; ) {
    await new Promise((r) => setTimeout(r, 100));
    const now = f();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

/**
 * Connects, fork()s, and exits: the connecting process is gone, its child keeps the connection
 * open without reading. Resolves once the parent has exited, with the child's pid.
 */
async function connectForkAndExit(path: string): Promise<number> {
  const script = `
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
os._exit(0)
`;
  const p = spawn(SYSTEM_PYTHON, ["-c", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = (await once(createInterface({ input: p.stdout }), "line")) as [string];
  if (p.exitCode === null) await once(p, "exit");
  const child = Number(line);
  cleanups.push(async () => {
    try {
      process.kill(child, "SIGKILL");
    } catch {
      // gone already
    }
  });
  return child;
}

describe("GateServer: peer identification", () => {
  it("a peer that exited before it was identified is denied and its slot is freed (the connection is closed, not left paused)", async () => {
    let parentsGone!: () => void;
    const gone = new Promise<void>((r) => {
      parentsGone = r;
    });
    const t = await startServer(
      { maxConnections: 2 },
      {
        identify: async (socket, signal) => {
          await gone; // identify only once the connecting processes have exited
          return identifyPeer(socket, { signal });
        },
      },
    );
    const children = [await connectForkAndExit(t.path), await connectForkAndExit(t.path)];
    for (const pid of children) expect(() => process.kill(pid, 0)).not.toThrow(); // connections still open
    parentsGone();
    await until("the unidentified connections to be closed", () => t.gate.connectionCount === 0);
    expect(t.recorded.map((r) => r.reason)).toContain("peer_unknown");

    const c = await rawClient(t.path);
    c.socket.write(request(1));
    await until("a reply", () => c.replies.length > 0);
    expect(Object.fromEntries(c.replies[0]!)).toMatchObject({ id: 1, ok: true });
  });

  it("identification that does not finish within read_timeout_ms is denied peer_unknown, and its work aborted", async () => {
    let signalSeen: AbortSignal | undefined;
    const t = await startServer(
      { readTimeoutMs: 200 },
      {
        identify: (_socket, signal) => {
          signalSeen = signal;
          return new Promise<never>(() => undefined); // ignores the signal: the server's deadline must hold
        },
      },
    );
    const c = await rawClient(t.path);
    await c.closed;
    expect(c.replies.map((r) => Object.fromEntries(r))).toEqual([
      { v: 1, id: 0, ok: false, error: "denied", reason: "peer_unknown" },
    ]);
    expect(signalSeen?.aborted).toBe(true);
    await until("the slot to be freed", () => t.gate.connectionCount === 0);
    expect(t.recorded).toHaveLength(1);
  });
});

describe("GateServer: connections per uid", () => {
  it("a uid over max_connections_per_uid is refused busy once identified; a closed connection frees its slot", async () => {
    const t = await startServer({ maxConnectionsPerUid: 2 });
    const held = [await rawClient(t.path), await rawClient(t.path)];
    for (const [i, c] of held.entries()) c.socket.write(request(i + 1));
    await until("both served", () => held.every((c) => c.replies.length === 1));
    const third = await rawClient(t.path);
    await third.closed;
    expect(third.replies.map((r) => Object.fromEntries(r))).toEqual([
      { v: 1, id: 0, ok: false, error: "busy" },
    ]);
    held[0]!.socket.destroy();
    await until("the slot to be freed", () => t.gate.connectionCount === 1);
    const fourth = await rawClient(t.path);
    fourth.socket.write(request(4));
    await until("a reply", () => fourth.replies.length === 1);
    expect(fourth.replies[0]!.get("ok")).toBe(true);
  });
});

describe("GateServer: refused connections and connections being identified", () => {
  /** A handler whose identification refuses the first `n` connections, then identifies for real. */
  const refusingFirst = (n: number): Partial<RequestHandler> => {
    let left = n;
    return {
      identify: (socket, signal) =>
        left-- > 0
          ? Promise.reject(new ExecgateError("verification_failed", "refused for the test"))
          : identifyPeer(socket, { signal }),
    };
  };

  /** Writes a byte to each client: one the daemon has let go fails (EPIPE) and closes. */
  const poke = async (clients: RawClient[]) => {
    for (const c of clients) c.socket.write(Uint8Array.of(0));
    await settled(() => clients.filter((c) => c.isClosed()).length);
  };

  it("refused connections whose clients never close do not hold max_connections", async () => {
    const t = await startServer({ maxConnections: 2, readTimeoutMs: 60_000 }, refusingFirst(2));
    const refused = [await rawClient(t.path, true, true), await rawClient(t.path, true, true)];
    await until("both refused", () => refused.every((c) => c.replies.length === 1));
    await poke(refused);
    expect(refused.some((c) => c.isClosed())).toBe(false); // lingering, for read_timeout_ms
    const c = await rawClient(t.path);
    c.socket.write(request(1));
    await until("a reply", () => c.replies.length > 0);
    expect(Object.fromEntries(c.replies[0]!)).toMatchObject({ id: 1, ok: true });
  });

  it("no more than max_connections refused connections linger: the next is cut once answered", async () => {
    const t = await startServer({ maxConnections: 2, readTimeoutMs: 60_000 }, refusingFirst(3));
    const clients = [
      await rawClient(t.path, true, true),
      await rawClient(t.path, true, true),
      await rawClient(t.path, true, true),
    ];
    await until("all three refused", () => clients.every((c) => c.replies.length === 1));
    for (const c of clients)
      expect(c.replies.map((r) => Object.fromEntries(r))).toEqual([
        { v: 1, id: 0, ok: false, error: "denied", reason: "peer_unknown" },
      ]);
    await poke(clients);
    // The third was let go once answered, well before read_timeout_ms (60 s).
    expect(clients.map((c) => c.isClosed())).toEqual([false, false, true]);
  });

  it("connections still being identified count against their uid (SO_PEERCRED at accept): busy at once", async () => {
    let identifying = 0;
    const t = await startServer(
      { maxConnectionsPerUid: 2, readTimeoutMs: 60_000 },
      {
        peerUid: (socket) => peerUid(socket),
        identify: () => {
          identifying++;
          return new Promise<never>(() => undefined); // stays unidentified
        },
      },
    );
    await rawClient(t.path);
    await rawClient(t.path);
    await until("both being identified", () => identifying === 2);
    const third = await rawClient(t.path);
    await third.closed;
    expect(third.replies.map((r) => Object.fromEntries(r))).toEqual([
      { v: 1, id: 0, ok: false, error: "busy" },
    ]);
    expect(identifying).toBe(2);
    expect(t.gate.connectionCount).toBe(2);
  });
});

describe("GateServer: read deadline", () => {
  it("a bare frame header starts the read deadline", async () => {
    const t = await startServer({ readTimeoutMs: 200 });
    const c = await rawClient(t.path);
    c.socket.write(Uint8Array.of(0, 0, 0, 50));
    await c.closed;
    expect(t.handled).toHaveLength(0);
  });

  it("a frame trickling in a byte at a time does not extend the deadline (slowloris)", async () => {
    const t = await startServer({ readTimeoutMs: 300 });
    const c = await rawClient(t.path);
    // Complete requests work, then a frame of 1000 bytes sent at one byte per 50 ms: it would take
    // 50 s, so the connection must close long before the 100 bytes below are sent.
    c.socket.write(request(1));
    await until("the first reply", () => c.replies.length === 1);
    c.socket.write(Uint8Array.of(0, 0, 3, 0xe8));
    for (let i = 0; i < 100 && !c.isClosed(); i++) {
      c.socket.write(Uint8Array.of(0xa0));
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(c.isClosed()).toBe(true);
    expect(t.handled).toHaveLength(1);
  });
});

describe("GateServer: what a connection may make the daemon hold", () => {
  it("stops dispatching at 64 requests in flight, even from one chunk, and continues as they complete", async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const t = await startServer(
      {},
      {
        handle: async (_peer, req) => {
          t.handled.push(req);
          await released;
          return okReply(req.id, {});
        },
      },
    );
    const c = await rawClient(t.path);
    c.socket.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => request(i + 1))));
    expect(await settled(() => t.handled.length)).toBe(64);
    release();
    await until("every reply", () => c.replies.length === 100);
    expect(new Set(c.replies.map((r) => r.get("id"))).size).toBe(100);
  });

  it("a client that sends without reading cannot make the daemon buffer more than the bound (rate_limited replies too)", async () => {
    const t = await startServer({ requestsPerSecondPerUid: 1, burstPerUid: 1 });
    const n = 100_000;
    const c = await rawClient(t.path, false);
    c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => request(i + 1))));
    const answered = await settled(() => t.gate.stats.rateLimited);
    const replyBytes = encodeFrame(errorReply(n, "denied", "rate_limited")).length;
    // unsent replies (the bound) + what the kernel holds for the client + one reply
    expect(answered * replyBytes).toBeLessThan(MAX_UNSENT_REPLY_BYTES + 512 * 1024);
    expect(answered).toBeLessThan(n - 1);
    c.socket.resume();
    await until("every reply", () => c.replies.length === n, 60_000);
    expect(t.gate.stats.rateLimited).toBe(n - 1);
  }, 90_000);

  it("a client that sends without ever reading its replies is closed after idle_timeout_ms", async () => {
    const t = await startServer({ requestsPerSecondPerUid: 1, burstPerUid: 1, idleTimeoutMs: 1000 });
    const n = 100_000;
    const c = await rawClient(t.path, false);
    c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => request(i + 1))));
    await c.closed;
    expect(t.gate.stats.rateLimited).toBeLessThan(n - 1);
    await until("its slot to be freed", () => t.gate.connectionCount === 0);
  }, 60_000);
});

describe("GateServer: refusals that cost the client nothing go to the handler, every one", () => {
  const garbage = encodeFrame(Uint8Array.of(0xff));

  // Which of them the lineage records in full and which it counts is the gate's (denial windows:
  // test/unit/gate-denial-windows.test.ts, test/integration/gate-request.test.ts).
  it("malformed frames: every client is answered, every refusal handed on and counted", async () => {
    const t = await startServer();
    const replies: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await rawClient(t.path);
      c.socket.write(garbage);
      await c.closed;
      replies.push(...c.replies.map((r) => Object.fromEntries(r)));
    }
    expect(replies).toEqual(
      Array(5).fill({ v: 1, id: 0, ok: false, error: "bad_request", reason: "request_malformed" }),
    );
    expect(t.recorded.map((r) => [r.reason, r.code])).toEqual(
      Array(5).fill(["request_malformed", undefined]),
    );
    t.nowMs += 1000;
    const c = await rawClient(t.path);
    c.socket.write(garbage);
    await c.closed;
    expect(t.recorded).toHaveLength(6);
    expect(t.gate.stats.malformed).toBe(6);
  });

  it("a frame that is only too large: the same reply, handed on with its own code", async () => {
    const t = await startServer({ maxFrameBytes: 1024 });
    const c = await rawClient(t.path);
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, 1025, false);
    c.socket.write(header);
    await c.closed;
    expect(c.replies.map((r) => Object.fromEntries(r))).toEqual([
      { v: 1, id: 0, ok: false, error: "bad_request", reason: "request_malformed" },
    ]);
    expect(t.recorded.map((r) => [r.reason, r.code])).toEqual([["request_malformed", "frame_too_large"]]);
    expect(t.recorded[0]!.detail).toContain("1025 bytes exceeds 1024");
    // One byte within the limit but not a request: malformed, with no code.
    const g = await rawClient(t.path);
    g.socket.write(garbage);
    await g.closed;
    expect(t.recorded.map((r) => r.code)).toEqual(["frame_too_large", undefined]);
  });

  it("failed identifications: every client is denied, every refusal handed on", async () => {
    const t = await startServer(
      {},
      {
        identify: async () => {
          throw new ExecgateError("verification_failed", "peer exited", { check: "peer_exited" });
        },
      },
    );
    for (let i = 0; i < 3; i++) {
      const c = await rawClient(t.path);
      await c.closed;
      expect(c.replies.map((r) => r.get("reason"))).toEqual(["peer_unknown"]);
    }
    expect(t.recorded.map((r) => r.reason)).toEqual(["peer_unknown", "peer_unknown", "peer_unknown"]);
  });
});

describe("GateServer: malformed requests", () => {
  it("a float in a request is bad_request (request_malformed), not unsupported_version", async () => {
    const t = await startServer();
    const c = await rawClient(t.path);
    // { "v": 1, "id": 9, "op": "status", "args": 1.0 (half float) } in deterministic key order
    const payload = Buffer.concat([
      Buffer.from([0xa4, 0x61, 0x76, 0x01, 0x62, 0x69, 0x64, 0x09, 0x62, 0x6f, 0x70]),
      Buffer.from([0x66, ...Buffer.from("status")]),
      Buffer.from([0x64, ...Buffer.from("args"), 0xf9, 0x3c, 0x00]),
    ]);
    c.socket.write(encodeFrame(payload));
    await c.closed;
    expect(c.replies.map((r) => [r.get("error"), r.get("reason")])).toEqual([
      ["bad_request", "request_malformed"],
    ]);
    const v2 = await rawClient(t.path);
    v2.socket.write(
      encodeFrame(Buffer.from([0xa3, 0x61, 0x76, 0x02, 0x62, 0x69, 0x64, 0x01, 0x62, 0x6f, 0x70, 0x60])),
    );
    await v2.closed;
    expect(v2.replies.map((r) => r.get("error"))).toEqual(["unsupported_version"]);
  });
});
