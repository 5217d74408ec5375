import { connect as netConnect, type Socket } from "node:net";
import type { CborKey, CborValue } from "../cbor/index.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from "../wire/frame.js";
import { encodeRequest } from "../wire/request.js";
import {
  type IssuedToken,
  parseReply,
  type RedeemedToken,
  readIssuedToken,
  readRedeemedToken,
  readTextKeyedMap,
} from "./replies.js";

/*
 * The executor's side of the socket protocol (docs/protocol.md). One persistent connection;
 * requests carry ids 1..2^32-1 and may be pipelined, replies are matched by id in whatever order
 * they come. Every request has its own deadline. Any reply that is not a well-formed v1 reply
 * (oversized frame, bad CBOR, an id never sent) makes the connection unusable: it is closed and
 * every request in flight fails with that error.
 */

export const DEFAULT_SOCKET_PATH = "/run/execgate/execgate.sock";
/** Long enough for a `fresh` scope that waits for the next epoch's quote on a slow TPM. */
export const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_REQUEST_ID = 0xffffffff;

/** The socket path: `EXECGATE_SOCKET` when set and non-empty, else /run/execgate/execgate.sock. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.EXECGATE_SOCKET;
  return p !== undefined && p !== "" ? p : DEFAULT_SOCKET_PATH;
}

export interface ConnectOptions {
  /** The daemon's socket (default: defaultSocketPath()); may also be given as connect's first argument. */
  readonly socketPath?: string;
  /** Deadline for connecting and for each request, ms (default 30 000). */
  readonly timeoutMs?: number;
  /** Largest reply frame accepted (default 64 KiB); checked from the length header. */
  readonly maxFrameBytes?: number;
}

interface TokenRequestCommon {
  readonly scope: string;
  /** 8..64 bytes, echoed in the token's eat_nonce claim. */
  readonly nonce?: Uint8Array;
  readonly audience?: string;
}

/** Exactly one of argv (the daemon computes the action digest) and action (a SHA-256 digest). */
export type TokenRequest = TokenRequestCommon &
  (
    | { readonly argv: readonly string[]; readonly action?: never }
    | { readonly action: Uint8Array; readonly argv?: never }
  );

export interface ExecutionReport {
  readonly tokenId: Uint8Array;
  /** The exit code, or 128 + signal number for a child killed by a signal. */
  readonly exitStatus: number;
  readonly durationMs: number;
  /** SHA-256 digests of the outputs, at most 64. */
  readonly outputs?: readonly Uint8Array[];
}

type Result = ReadonlyMap<CborKey, CborValue>;

/** A caller's mistake in the API's arguments: ExecgateError "usage", naming the field. */
function usage(message: string): ExecgateError {
  return new ExecgateError("usage", message);
}

function checkSocketPath(v: unknown): string {
  if (v === undefined) return defaultSocketPath();
  if (typeof v !== "string" || v === "" || v.includes("\0"))
    throw usage("socketPath must be a non-empty path string (the daemon's Unix socket)");
  return v;
}

function checkPositive(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
    throw usage(`${name} must be a positive integer`);
  return v;
}

/** What a failed connect means to someone who wants to know whether the daemon runs. */
function connectHint(code: string | undefined): string {
  switch (code) {
    case "ENOENT":
      return " (no socket there: the daemon is not running, or listens elsewhere: --socket / $EXECGATE_SOCKET)";
    case "ECONNREFUSED":
      return " (a socket file but nobody accepts: the daemon is not running)";
    case "EACCES":
      return " (this user may not open the socket: add it to the execgate-clients group)";
    default:
      return "";
  }
}

/** The request's shape, checked before anything is sent, each mistake naming its field. */
function checkTokenRequest(req: TokenRequest): void {
  if (typeof req !== "object" || req === null) throw usage("requestToken needs a request object");
  if (typeof req.scope !== "string" || req.scope === "")
    throw usage("scope is required (a non-empty string)");
  const { argv, action } = req as { argv?: unknown; action?: unknown };
  if (argv === undefined && action === undefined)
    throw usage("argv is required (the command to run), or action (its SHA-256 digest) instead");
  if (argv !== undefined && action !== undefined) throw usage("give argv or action, not both");
  if (
    argv !== undefined &&
    (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string"))
  )
    throw usage("argv must be a non-empty array of strings");
  if (action !== undefined && (!(action instanceof Uint8Array) || action.length !== 32))
    throw usage("action must be a 32-byte Uint8Array (a SHA-256 digest)");
}

interface Pending {
  readonly op: string;
  readonly resolve: (r: Result) => void;
  readonly reject: (e: ExecgateError) => void;
  readonly timer: NodeJS.Timeout;
}

export class ExecgateClient {
  private readonly pending = new Map<number, Pending>();
  private readonly decoder: FrameDecoder;
  private nextId = 1;
  private wrapped = false;
  private failure: ExecgateError | undefined;
  /** Set when the daemon ended the connection with a reply of its own (busy, peer_unknown, …). */
  private refusal: ExecgateError | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
    private readonly timeoutMs: number,
    private readonly maxFrameBytes: number,
  ) {
    this.decoder = new FrameDecoder(maxFrameBytes);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (e: NodeJS.ErrnoException) =>
      this.abort(new ExecgateError("io_error", `socket error: ${e.code ?? e.message}`, {}, { cause: e })),
    );
    this.closedPromise = new Promise((resolve) => {
      socket.once("close", () => {
        this.abort(new ExecgateError("io_error", "connection closed by the daemon"));
        resolve();
      });
    });
    // An idle client does not keep the process alive; a request in flight does (see updateRef).
    socket.unref();
  }

  /**
   * Connects to the daemon's socket (`socketPath`, else defaultSocketPath()). Fails with
   * ExecgateError "io_error" if nothing listens there, "timeout" if the connect does not complete.
   */
  static connect(socketPath?: string | ConnectOptions, opts: ConnectOptions = {}): Promise<ExecgateClient> {
    const o = typeof socketPath === "object" && socketPath !== null ? socketPath : opts;
    let path: string;
    let timeoutMs: number;
    let maxFrameBytes: number;
    try {
      path = checkSocketPath(
        typeof socketPath === "object" && socketPath !== null ? o.socketPath : socketPath,
      );
      timeoutMs = checkPositive(o.timeoutMs, "timeoutMs") ?? DEFAULT_TIMEOUT_MS;
      maxFrameBytes = checkPositive(o.maxFrameBytes, "maxFrameBytes") ?? DEFAULT_MAX_FRAME_BYTES;
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const socket = netConnect({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new ExecgateError("timeout", `connect to ${path}: no answer within ${timeoutMs} ms`, { path }),
        );
      }, timeoutMs);
      const onError = (e: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          new ExecgateError(
            "io_error",
            `cannot connect to ${path}: ${e.code ?? e.message}${connectHint(e.code)}`,
            { path, errno: e.code ?? null },
            { cause: e },
          ),
        );
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        resolve(new ExecgateClient(socket, path, timeoutMs, maxFrameBytes));
      });
    });
  }

  /** True once the connection is gone (closed by either side or after a protocol error). */
  get closed(): boolean {
    return this.failure !== undefined;
  }

  /** Asks for a token. A denial throws ExecgateDenied with its reason. */
  async requestToken(req: TokenRequest): Promise<IssuedToken> {
    checkTokenRequest(req);
    const r = await this.call("token.request", {
      scope: req.scope,
      argv: req.argv === undefined ? undefined : [...req.argv],
      action: req.action,
      nonce: req.nonce,
      audience: req.audience,
    });
    return readIssuedToken(r);
  }

  /** Redeems a token once, at the start of the execution it authorizes. */
  async redeem(token: Uint8Array): Promise<RedeemedToken> {
    return readRedeemedToken(await this.call("token.redeem", { token }));
  }

  /** Reports how the execution of a redeemed token ended. */
  async report(r: ExecutionReport): Promise<void> {
    await this.call("execution.report", {
      token_id: r.tokenId,
      exit_status: r.exitStatus,
      duration_ms: r.durationMs,
      outputs: r.outputs === undefined ? undefined : [...r.outputs],
    });
  }

  /** Daemon health: a map with text keys; its fields are the daemon's (docs/protocol.md). */
  async status(): Promise<ReadonlyMap<string, CborValue>> {
    return readTextKeyedMap(await this.call("status", {}), "status");
  }

  /** The current verified evidence, as the daemon presents it. */
  async evidence(epoch?: Uint8Array): Promise<ReadonlyMap<CborKey, CborValue>> {
    return this.call("evidence", epoch ? { epoch } : {});
  }

  /** Asks the daemon to write an audit bundle into its state directory (root / daemon user only). */
  async exportLineage(): Promise<{ path: string; size: number }> {
    const r = await this.call("lineage.export", {});
    const path = r.get("path");
    const size = r.get("size");
    if (typeof path !== "string" || typeof size !== "number") {
      throw new ExecgateError("malformed", "lineage.export: reply needs path and size");
    }
    return { path, size };
  }

  /** Closes the connection; requests still in flight fail with "io_error". */
  async close(): Promise<void> {
    this.abort(new ExecgateError("io_error", "client closed"));
    await this.closedPromise;
  }

  private call(op: string, args: Record<string, CborValue | undefined>): Promise<Result> {
    if (this.refusal !== undefined) return Promise.reject(this.refusal);
    if (this.failure !== undefined) {
      return Promise.reject(
        new ExecgateError("io_error", `${op}: connection is closed`, {}, { cause: this.failure }),
      );
    }
    let frame: Uint8Array;
    const id = this.allocateId();
    try {
      frame = encodeFrame(encodeRequest(id, op, args), this.maxFrameBytes);
    } catch (e) {
      return Promise.reject(asExecgateError(e));
    }
    return new Promise<Result>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.updateRef();
        reject(new ExecgateError("timeout", `${op}: no reply within ${this.timeoutMs} ms`, { op, id }));
      }, this.timeoutMs);
      this.pending.set(id, { op, resolve, reject, timer });
      this.updateRef();
      this.socket.write(frame);
    });
  }

  private allocateId(): number {
    let id = this.nextId;
    // After 2^32 - 1 requests ids wrap; skip any still in flight.
    while (this.pending.has(id)) id = id >= MAX_REQUEST_ID ? 1 : id + 1;
    if (id >= MAX_REQUEST_ID) this.wrapped = true;
    this.nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
    return id;
  }

  /** A reply to an id we sent whose request already timed out is dropped. */
  private wasIssued(id: number): boolean {
    return id >= 1 && (this.wrapped || id < this.nextId);
  }

  private onData(chunk: Buffer): void {
    if (this.failure !== undefined) return;
    let frames: Uint8Array[];
    try {
      frames = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (e) {
      this.abort(asExecgateError(e));
      return;
    }
    for (const frame of frames) {
      let reply: ReturnType<typeof parseReply>;
      try {
        reply = parseReply(frame);
      } catch (e) {
        this.abort(asExecgateError(e));
        return;
      }
      const p = this.pending.get(reply.id);
      if (p === undefined) {
        // id 0: the daemon refuses the connection itself (busy, peer_unknown) or could not read
        // the id of something we sent; either way it applies to every request on it.
        if (reply.id === 0 && !reply.ok) {
          this.refusal = reply.error;
          this.abort(reply.error);
          return;
        }
        if (this.wasIssued(reply.id)) continue;
        this.abort(new ExecgateError("malformed", `reply for id ${reply.id}, which was never sent`));
        return;
      }
      this.pending.delete(reply.id);
      clearTimeout(p.timer);
      if (reply.ok) p.resolve(reply.result);
      else p.reject(reply.error);
    }
    this.updateRef();
  }

  /** Ends the connection for good; every request in flight fails with `err`. */
  private abort(err: ExecgateError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.socket.destroy();
  }

  private updateRef(): void {
    if (this.pending.size > 0) this.socket.ref();
    else this.socket.unref();
  }
}
