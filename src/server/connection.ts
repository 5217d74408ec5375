import type { Socket } from "node:net";
import type { DenialCode } from "../core/denial.js";
import { asExecgateError } from "../core/errors.js";
import type { PeerIdentity } from "../peer/index.js";
import { encodeFrame, FrameDecoder } from "../wire/frame.js";
import { errorReply } from "../wire/reply.js";
import { parseRequest, peekRequestId, type Request, refusalOf } from "../wire/request.js";

/** Replies a connection may leave unsent (its client not reading) before the daemon stops reading it. */
export const MAX_UNSENT_REPLY_BYTES = 1024 * 1024;

export interface ConnectionLimits {
  readonly maxFrameBytes: number;
  /** A frame that has started must be whole within this time (counted while the daemon reads). */
  readonly readTimeoutMs: number;
  /** A connection with no complete request for this long, and nothing in flight, is closed. */
  readonly idleTimeoutMs: number;
  readonly maxInFlight: number;
}

/** What a connection asks of its server. */
export interface ConnectionHooks {
  /** False when the peer's uid is over its request rate (the server counts and records it). */
  admit(peer: PeerIdentity): boolean;
  /** The reply to a well-formed request; never rejects (a failure is a denial reply). */
  answer(peer: PeerIdentity, req: Request): Promise<Uint8Array>;
  /** Counts and records a malformed frame or request (`code`: which fault, where one is named). */
  malformed(peer: PeerIdentity, detail: string, code?: DenialCode): void;
  /** How long an answered request took, from dispatch to its reply handed to the socket. */
  served(op: string, seconds: number): void;
}

/**
 * Sends a last reply and half-closes: what the client still sends (a request written before it
 * read this reply) is read and dropped, so its write does not fail (EPIPE) before it can read
 * the reply. Destroyed when the client closes its side, or after `graceMs`.
 */
export function closeWith(socket: Socket, reply: Uint8Array, graceMs: number): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), graceMs);
  socket.once("close", () => clearTimeout(timer));
  socket.once("end", () => socket.destroy());
  socket.on("data", () => undefined);
  socket.resume();
  socket.end(encodeFrame(reply));
}

/**
 * One identified client connection: frames in, requests dispatched, replies out (docs/protocol.md,
 * Limits). The daemon reads only while the connection has room — fewer than `maxInFlight` requests
 * in flight, no decoded request waiting, at most MAX_UNSENT_REPLY_BYTES of replies unsent — and
 * resumes when a request completes or the socket drains, so a client that pipelines without
 * reading its replies cannot make the daemon buffer without bound.
 */
export class Connection {
  private readonly decoder: FrameDecoder;
  /** Requests decoded but not dispatched yet: at most one chunk's worth, as reading stops meanwhile. */
  private readonly waiting: Uint8Array[] = [];
  private inFlight = 0;
  private closing = false;
  private reading = false;
  private readTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly peer: PeerIdentity,
    private readonly limits: ConnectionLimits,
    private readonly hooks: ConnectionHooks,
  ) {
    this.decoder = new FrameDecoder(limits.maxFrameBytes);
  }

  start(): void {
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("drain", () => {
      this.armIdle();
      this.pump();
    });
    this.socket.once("close", () => this.stopTimers());
    this.armIdle();
    this.setReading(true);
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    let frames: Uint8Array[];
    try {
      frames = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (e) {
      const err = asExecgateError(e);
      // The decoder's only limit is the frame length, refused from the header alone.
      this.fail(0, "bad_request", err.message, err.code === "limit_exceeded" ? "frame_too_large" : undefined);
      return;
    }
    if (frames.length > 0) {
      this.armIdle();
      this.clearReadTimer(); // its frame is whole; a frame begun in this chunk gets its own deadline
    }
    this.waiting.push(...frames);
    this.pump();
  }

  /** Dispatches waiting requests while there is room, then reads again only if all were dispatched. */
  private pump(): void {
    while (!this.closing && this.waiting.length > 0 && this.hasRoom()) this.dispatch(this.waiting.shift()!);
    if (this.closing || this.socket.destroyed) return;
    this.setReading(this.waiting.length === 0 && this.hasRoom());
  }

  private hasRoom(): boolean {
    return this.inFlight < this.limits.maxInFlight && this.socket.writableLength <= MAX_UNSENT_REPLY_BYTES;
  }

  private dispatch(frame: Uint8Array): void {
    let req: Request;
    try {
      req = parseRequest(frame);
    } catch (e) {
      const err = asExecgateError(e);
      this.fail(peekRequestId(frame), refusalOf(err), err.message);
      return;
    }
    if (!this.hooks.admit(this.peer)) {
      this.send(errorReply(req.id, "denied", "rate_limited"));
      return;
    }
    this.inFlight++;
    const started = performance.now();
    void this.hooks.answer(this.peer, req).then((reply) => {
      this.inFlight--;
      if (this.closing || this.socket.destroyed) return;
      this.send(reply);
      this.hooks.served(req.op, (performance.now() - started) / 1000);
      this.pump();
    });
  }

  private send(reply: Uint8Array): void {
    this.socket.write(encodeFrame(reply, Math.max(this.limits.maxFrameBytes, reply.length)));
  }

  /** Answers a malformed frame or request with `error` and closes the connection. */
  private fail(
    id: number,
    error: "bad_request" | "unsupported_version" | "unknown_op",
    detail: string,
    code?: DenialCode,
  ): void {
    this.closing = true;
    this.waiting.length = 0;
    this.stopTimers();
    this.hooks.malformed(this.peer, detail, code);
    closeWith(this.socket, errorReply(id, error, "request_malformed"), this.limits.readTimeoutMs);
  }

  private setReading(on: boolean): void {
    if (on !== this.reading) {
      this.reading = on;
      if (on) this.socket.resume();
      else this.socket.pause();
    }
    this.trackReadDeadline();
  }

  /**
   * A started frame must be whole within readTimeoutMs of its first byte; bytes that trickle in
   * do not extend it. It does not run while the daemon itself has stopped reading.
   */
  private trackReadDeadline(): void {
    if (this.reading && this.decoder.midFrame)
      this.readTimer ??= setTimeout(() => this.socket.destroy(), this.limits.readTimeoutMs);
    else this.clearReadTimer();
  }

  private clearReadTimer(): void {
    clearTimeout(this.readTimer);
    this.readTimer = undefined;
  }

  /**
   * Restarted by each complete request and by each drain of the replies; a connection still
   * being answered is not idle. Requests waiting with none in flight wait on the client reading
   * its replies: one that has not read any for the whole idle time is closed like an idle one.
   */
  private armIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.inFlight > 0) this.armIdle();
      else this.socket.destroy();
    }, this.limits.idleTimeoutMs);
  }

  private stopTimers(): void {
    this.clearReadTimer();
    clearTimeout(this.idleTimer);
  }
}
