import type { Server, Socket } from "node:net";
import type { Logger } from "pino";
import { withDeadline } from "../core/deadline.js";
import type { DenialReason } from "../core/denial.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import type { PeerIdentity } from "../peer/index.js";
import { Connection, closeWith } from "./connection.js";
import { errorReply, type Request } from "./protocol.js";
import { RateLimiter, RecordThrottle } from "./rate-limit.js";

export interface ServerLimits {
  readonly maxFrameBytes: number;
  readonly maxConnections: number;
  /** Connections one uid may hold at once (counted once identified); unset: maxConnections. */
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
  /** Answers one well-formed request; must never throw (a failure is a denial reply). */
  handle(peer: PeerIdentity, req: Request): Promise<Uint8Array>;
  /** Records a refusal that never reached `handle`. */
  rejected(peer: PeerIdentity | undefined, reason: DenialReason, detail: string): void;
}

const DEFAULT_MAX_IN_FLIGHT = 64;

/**
 * The socket server: framing, limits enforced before allocation, deadlines, per-uid rate limits.
 * Malformed input gets a typed error reply and the connection is closed; nothing here can turn
 * a failure into an allow, because only `handle` produces successful replies.
 */
export class GateServer {
  private readonly connections = new Set<Socket>();
  private readonly connectionsPerUid = new Map<number, number>();
  private readonly limiter: RateLimiter;
  private readonly recordThrottle = new RecordThrottle();
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

  get connectionCount(): number {
    return this.connections.size;
  }

  /** The net.Server's connection callback (listenUnix / an activated socket). */
  readonly onConnection = (socket: Socket): void => {
    socket.on("error", () => socket.destroy());
    if (this.connections.size >= this.limits.maxConnections) {
      this.stats.refused++;
      closeWith(socket, errorReply(0, "busy"), this.limits.readTimeoutMs);
      return;
    }
    this.connections.add(socket);
    this.stats.accepted++;
    socket.once("close", () => this.connections.delete(socket));
    void this.serve(socket);
  };

  private async serve(socket: Socket): Promise<void> {
    const peer = await this.identify(socket);
    if (peer === undefined || socket.destroyed) return;
    if (!this.holdUidSlot(peer.uid, socket)) {
      this.stats.refused++;
      closeWith(socket, errorReply(0, "busy"), this.limits.readTimeoutMs);
      return;
    }
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
        malformed: (p, detail) => {
          this.stats.malformed++;
          this.refuse(p, "request_malformed", detail);
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
  private async identify(socket: Socket): Promise<PeerIdentity | undefined> {
    try {
      const ms = this.limits.readTimeoutMs;
      return await withDeadline(
        (signal) => this.handler.identify(socket, signal),
        ms,
        () => new ExecgateError("timeout", `peer identification took longer than ${ms} ms`),
      );
    } catch (e) {
      this.refuse(undefined, "peer_unknown", `peer not identifiable: ${asExecgateError(e).message}`);
      closeWith(socket, errorReply(0, "denied", "peer_unknown"), this.limits.readTimeoutMs);
      return undefined;
    }
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
   * Records a refusal that costs the client nothing (rate_limited, malformed, unidentified) at most
   * once a second per uid and reason, with the count left unrecorded since; every refusal is
   * still answered and counted in `stats`. Unidentified peers share one key.
   */
  private refuse(peer: PeerIdentity | undefined, reason: DenialReason, detail: string): void {
    const skipped = this.recordThrottle.admit(`${peer?.uid ?? "unidentified"}:${reason}`, this.now());
    if (skipped === undefined) return;
    this.handler.rejected(
      peer,
      reason,
      skipped > 0 ? `${detail} (and ${skipped} unrecorded since the last record)` : detail,
    );
  }

  /** Stops accepting, then drops open connections (their in-flight requests finish or fail). */
  async close(server: Server): Promise<void> {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.connections) s.destroy();
    await closed;
  }
}
