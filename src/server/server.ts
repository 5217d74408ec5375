import type { Server, Socket } from "node:net";
import type { Logger } from "pino";
import { withDeadline } from "../core/deadline.js";
import type { DenialCode, DenialReason } from "../core/denial.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import type { PeerIdentity } from "../peer/index.js";
import { encodeFrame } from "../wire/frame.js";
import { errorReply } from "../wire/reply.js";
import type { Request } from "../wire/request.js";
import { Connection, closeWith } from "./connection.js";
import { RateLimiter } from "./rate-limit.js";

export interface ServerLimits {
  readonly maxFrameBytes: number;
  /** Connections being identified or served at once (refused ones, still closing, are not counted). */
  readonly maxConnections: number;
  /** Connections one uid may hold at once (counted from accept); unset: maxConnections. */
  readonly maxConnectionsPerUid?: number;
  /** A frame that has started must be complete within this time; so must a new peer's identification. */
  readonly readTimeoutMs: number;
  /** A connection with no complete request for this long (and none in flight) is closed. */
  readonly idleTimeoutMs: number;
  readonly requestsPerSecondPerUid: number;
  readonly burstPerUid: number;
  /** Requests one connection may have in flight (pipelining). */
  readonly maxInFlightPerConnection?: number;
}

export interface RequestHandler {
  /**
   * Identifies the peer from the kernel (at accept, before any byte is read). The server denies the
   * connection when this has not settled by the deadline, and aborts `signal` then to stop the work.
   */
  identify(socket: Socket, signal: AbortSignal): Promise<PeerIdentity>;
  /**
   * The peer's uid from SO_PEERCRED, which costs nothing: the connection is counted against its
   * uid (max_connections_per_uid) before the slower identification. Without it, once identified.
   */
  peerUid?(socket: Socket): number;
  /** Answers one well-formed request; must never throw (a failure is a denial reply). */
  handle(peer: PeerIdentity, req: Request): Promise<Uint8Array>;
  /**
   * Records a refusal that never reached `handle` — every one: the handler decides which are
   * recorded in full and which are counted (repeated denials, src/gate/denial-windows.ts).
   */
  rejected(peer: PeerIdentity | undefined, reason: DenialReason, detail: string, code?: DenialCode): void;
}

const DEFAULT_MAX_IN_FLIGHT = 64;

/**
 * The socket server: framing, limits enforced before allocation, deadlines, per-uid rate limits.
 * Malformed input gets a typed error reply and the connection is closed; nothing here can turn
 * a failure into an allow, because only `handle` produces successful replies.
 */
export class GateServer {
  /** Every open socket (close() drops them all), refused ones that are still closing included. */
  private readonly connections = new Set<Socket>();
  /** Sockets being identified or served: what max_connections bounds. */
  private active = 0;
  /** Refused sockets given time to read their reply; beyond maxConnections they are cut at once. */
  private closing = 0;
  private readonly connectionsPerUid = new Map<number, number>();
  private readonly limiter: RateLimiter;
  readonly stats = { accepted: 0, refused: 0, malformed: 0, rateLimited: 0 };

  constructor(
    private readonly handler: RequestHandler,
    private readonly limits: ServerLimits,
    private readonly log: Logger,
    /** Monotonic milliseconds (performance.now): rate limits must not follow wall-clock steps. */
    private readonly now: () => number,
    /**
     * Told how long each answered request took in seconds: from the request parsed (after the rate
     * limit) to its reply handed to the socket. Event-loop waits before parsing are not in it.
     */
    private readonly served: (op: string, seconds: number) => void = () => undefined,
  ) {
    this.limiter = new RateLimiter(limits.requestsPerSecondPerUid, limits.burstPerUid);
  }

  /** Connections being identified or served (not those refused and still closing). */
  get connectionCount(): number {
    return this.active;
  }

  /** The net.Server's connection callback (listenUnix / an activated socket). */
  readonly onConnection = (socket: Socket): void => {
    socket.on("error", () => socket.destroy());
    this.connections.add(socket);
    socket.once("close", () => this.connections.delete(socket));
    if (this.active >= this.limits.maxConnections) {
      this.stats.refused++;
      this.closeRefused(socket, errorReply(0, "busy"));
      return;
    }
    this.active++;
    let counted = true;
    /** The connection stops counting against max_connections: closed, or refused. */
    const release = () => {
      if (counted) this.active--;
      counted = false;
    };
    socket.once("close", release);
    this.stats.accepted++;
    void this.serve(socket, release);
  };

  private async serve(socket: Socket, release: () => void): Promise<void> {
    const refuseBusy = () => {
      this.stats.refused++;
      release();
      this.closeRefused(socket, errorReply(0, "busy"));
    };
    // Counted against its uid from accept: one uid's connections waiting for identification
    // fill its own max_connections_per_uid, not the pool every uid shares.
    let uid: number | undefined;
    try {
      uid = this.handler.peerUid?.(socket);
    } catch {
      uid = undefined; // identification fails on the same call and refuses it
    }
    if (uid !== undefined && !this.holdUidSlot(uid, socket)) return refuseBusy();
    const peer = await this.identify(socket, release);
    if (peer === undefined || socket.destroyed) return;
    if (uid === undefined && !this.holdUidSlot(peer.uid, socket)) return refuseBusy();
    const connection = new Connection(
      socket,
      peer,
      {
        maxFrameBytes: this.limits.maxFrameBytes,
        readTimeoutMs: this.limits.readTimeoutMs,
        idleTimeoutMs: this.limits.idleTimeoutMs,
        maxInFlight: this.limits.maxInFlightPerConnection ?? DEFAULT_MAX_IN_FLIGHT,
      },
      {
        admit: (p) => this.admit(p),
        answer: (p, req) => this.dispatch(p, req),
        malformed: (p, detail, code) => {
          this.stats.malformed++;
          this.refuse(p, "request_malformed", detail, code);
        },
        served: this.served,
      },
    );
    connection.start();
  }

  /**
   * The peer of a new connection, within read_timeout_ms; otherwise the connection is denied
   * (id 0, peer_unknown) and closed, which frees its slot even though it was never read.
   */
  private async identify(socket: Socket, release: () => void): Promise<PeerIdentity | undefined> {
    try {
      const ms = this.limits.readTimeoutMs;
      return await withDeadline(
        (signal) => this.handler.identify(socket, signal),
        ms,
        () => new ExecgateError("timeout", `peer identification took longer than ${ms} ms`),
      );
    } catch (e) {
      this.refuse(undefined, "peer_unknown", `peer not identifiable: ${asExecgateError(e).message}`);
      release();
      this.closeRefused(socket, errorReply(0, "denied", "peer_unknown"));
      return undefined;
    }
  }

  /**
   * Answers a refused connection and closes it. It may stay read_timeout_ms for the client to read
   * the reply, uncounted by max_connections; but no more than maxConnections at once linger, so
   * clients that never close cannot pile up descriptors: past that, it is cut once the reply is
   * handed to the kernel (on a Unix socket the client can still read it).
   */
  private closeRefused(socket: Socket, reply: Uint8Array): void {
    if (socket.destroyed) return;
    if (this.closing >= this.limits.maxConnections) {
      socket.end(encodeFrame(reply), () => socket.destroy());
      return;
    }
    this.closing++;
    socket.once("close", () => this.closing--);
    closeWith(socket, reply, this.limits.readTimeoutMs);
  }

  /** Counts the connection against its uid until it closes; false when the uid has no slot left. */
  private holdUidSlot(uid: number, socket: Socket): boolean {
    const held = this.connectionsPerUid.get(uid) ?? 0;
    if (held >= (this.limits.maxConnectionsPerUid ?? this.limits.maxConnections)) return false;
    this.connectionsPerUid.set(uid, held + 1);
    socket.once("close", () => {
      const left = (this.connectionsPerUid.get(uid) ?? 1) - 1;
      if (left > 0) this.connectionsPerUid.set(uid, left);
      else this.connectionsPerUid.delete(uid);
    });
    return true;
  }

  private admit(peer: PeerIdentity): boolean {
    if (this.limiter.take(peer.uid, this.now())) return true;
    this.stats.rateLimited++;
    this.refuse(peer, "rate_limited", "per-uid request rate exceeded");
    return false;
  }

  private async dispatch(peer: PeerIdentity, req: Request): Promise<Uint8Array> {
    try {
      return await this.handler.handle(peer, req);
    } catch (e) {
      this.log.error({ op: req.op, err: asExecgateError(e).message }, "handler_failed");
      this.handler.rejected(peer, "internal_error", asExecgateError(e).message);
      return errorReply(req.id, "denied", "internal_error");
    }
  }

  /**
   * Hands a refusal that costs the client nothing (rate_limited, malformed, unidentified) to the
   * handler, which counts repeats instead of recording each; every refusal is still answered and
   * counted in `stats`.
   */
  private refuse(
    peer: PeerIdentity | undefined,
    reason: DenialReason,
    detail: string,
    code?: DenialCode,
  ): void {
    this.handler.rejected(peer, reason, detail, code);
  }

  /** Stops accepting, then drops open connections (their in-flight requests finish or fail). */
  async close(server: Server): Promise<void> {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.connections) s.destroy();
    await closed;
  }
}
