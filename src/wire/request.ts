import { type CborValue, decode, encode } from "../cbor/index.js";
import { digest } from "../core/digest.js";
import { ExecgateError } from "../core/errors.js";

/*
 * The socket protocol, version 1 (docs/protocol.md has the CDDL). One request map per frame:
 *   { "v": 1, "id": uint, "op": text, "args": { ... } }
 * and one reply per request, with the same id (reply.ts). Shared by the server and the client.
 */
export const PROTOCOL_VERSION = 1;

export const MAX_ARGV_ITEMS = 256;
export const MAX_ARGV_BYTES = 32 * 1024;
export const MAX_TOKEN_BYTES = 16 * 1024;
export const MAX_OUTPUT_DIGESTS = 64;

export type Request =
  | { readonly id: number; readonly op: "token.request"; readonly args: TokenRequestArgs }
  | { readonly id: number; readonly op: "token.redeem"; readonly args: { readonly token: Uint8Array } }
  | { readonly id: number; readonly op: "execution.report"; readonly args: ExecutionReportArgs }
  | { readonly id: number; readonly op: "status"; readonly args: Record<string, never> }
  | { readonly id: number; readonly op: "evidence"; readonly args: { readonly epoch?: Uint8Array } }
  | { readonly id: number; readonly op: "lineage.export"; readonly args: Record<string, never> };

export interface TokenRequestArgs {
  readonly scope: string;
  /** SHA-256 of the action: given directly, or computed from argv (see actionDigest). */
  readonly action: Uint8Array;
  readonly argv?: readonly string[];
  readonly nonce?: Uint8Array;
  readonly audience?: string;
}

export interface ExecutionReportArgs {
  readonly tokenId: Uint8Array;
  readonly exitStatus: number;
  readonly durationMs: number;
  readonly outputs?: readonly Uint8Array[];
}

/** The action digest of an argv: SHA-256 over its deterministic CBOR array. */
export function actionDigest(argv: readonly string[]): Uint8Array {
  return digest("sha256", encode(argv));
}

function bad(msg: string): ExecgateError {
  return new ExecgateError("malformed", msg);
}

type M = ReadonlyMap<unknown, CborValue>;

function allowKeys(m: M, keys: readonly string[], what: string): void {
  for (const k of m.keys())
    if (typeof k !== "string" || !keys.includes(k)) throw bad(`${what}: unknown field ${String(k)}`);
}

function optText(m: M, k: string, max: number): string | undefined {
  const v = m.get(k);
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw bad(`${k} must be text of 1..${max}`);
  return v;
}

function optBytes(m: M, k: string, min: number, max: number): Uint8Array | undefined {
  const v = m.get(k);
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array) || v.length < min || v.length > max)
    throw bad(`${k} must be ${min}..${max} bytes`);
  return v;
}

function int(m: M, k: string, min: number, max: number): number {
  const v = m.get(k);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max)
    throw bad(`${k} must be an integer ${min}..${max}`);
  return v;
}

const SCOPE_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function parseTokenRequest(a: M): TokenRequestArgs {
  allowKeys(a, ["scope", "action", "argv", "nonce", "audience"], "token.request");
  const scope = optText(a, "scope", 128);
  if (scope === undefined || !SCOPE_RE.test(scope)) throw bad("scope must match [A-Za-z0-9][A-Za-z0-9._:-]*");
  const given = optBytes(a, "action", 32, 32);
  const argvV = a.get("argv");
  let argv: string[] | undefined;
  if (argvV !== undefined) {
    if (!Array.isArray(argvV) || argvV.length === 0 || argvV.length > MAX_ARGV_ITEMS)
      throw bad("argv must be 1..256 strings");
    let total = 0;
    argv = (argvV as readonly CborValue[]).map((s) => {
      if (typeof s !== "string") throw bad("argv must be strings");
      total += s.length;
      return s;
    });
    if (total > MAX_ARGV_BYTES) throw bad("argv too long");
  }
  if ((given === undefined) === (argv === undefined)) throw bad("exactly one of action and argv is required");
  const nonce = optBytes(a, "nonce", 8, 64);
  const audience = optText(a, "audience", 256);
  return {
    scope,
    action: given ?? actionDigest(argv!),
    ...(argv ? { argv } : {}),
    ...(nonce ? { nonce } : {}),
    ...(audience ? { audience } : {}),
  };
}

function parseReport(a: M): ExecutionReportArgs {
  allowKeys(a, ["token_id", "exit_status", "duration_ms", "outputs"], "execution.report");
  const tokenId = optBytes(a, "token_id", 16, 16);
  if (!tokenId) throw bad("token_id is required");
  const outputsV = a.get("outputs");
  let outputs: Uint8Array[] | undefined;
  if (outputsV !== undefined) {
    if (!Array.isArray(outputsV) || outputsV.length > MAX_OUTPUT_DIGESTS)
      throw bad("outputs must be ≤ 64 digests");
    outputs = (outputsV as readonly CborValue[]).map((d) => {
      if (!(d instanceof Uint8Array) || d.length !== 32) throw bad("outputs must be SHA-256 digests");
      return d;
    });
  }
  return {
    tokenId,
    exitStatus: int(a, "exit_status", -255, 255),
    durationMs: int(a, "duration_ms", 0, 2 ** 40),
    ...(outputs ? { outputs } : {}),
  };
}

/**
 * Parses one request frame. Throws ExecgateError: `unsupported` with `detail.reply` for a version
 * we do not speak or an op we do not know, and otherwise whatever the schema or the CBOR decoder
 * refused (the decoder's own `unsupported`, e.g. a float, is a malformed request: see refusalOf).
 */
export function parseRequest(frame: Uint8Array): Request {
  const v = decode(frame, { maxDepth: 6, maxItems: 1024, maxLength: 64 * 1024 });
  if (!(v instanceof Map)) throw bad("request is not a map");
  const m = v as M;
  allowKeys(m, ["v", "id", "op", "args"], "request");
  const id = int(m, "id", 0, 2 ** 32 - 1);
  if (m.get("v") !== PROTOCOL_VERSION)
    throw new ExecgateError("unsupported", `protocol version ${String(m.get("v"))}`, {
      id,
      reply: "unsupported_version",
    });
  const op = m.get("op");
  const argsV = m.get("args") ?? new Map();
  if (!(argsV instanceof Map)) throw bad("args must be a map");
  const args = argsV as M;
  switch (op) {
    case "token.request":
      return { id, op, args: parseTokenRequest(args) };
    case "token.redeem": {
      allowKeys(args, ["token"], op);
      const token = optBytes(args, "token", 1, MAX_TOKEN_BYTES);
      if (!token) throw bad("token is required");
      return { id, op, args: { token } };
    }
    case "execution.report":
      return { id, op, args: parseReport(args) };
    case "status":
    case "lineage.export":
      allowKeys(args, [], op);
      return { id, op, args: {} };
    case "evidence": {
      allowKeys(args, ["epoch"], op);
      const epoch = optBytes(args, "epoch", 32, 32);
      return { id, op, args: epoch ? { epoch } : {} };
    }
    default:
      throw new ExecgateError("unsupported", `unknown op ${String(op)}`, {
        id,
        op: "unknown",
        reply: "unknown_op",
      });
  }
}

/** The reply error for a frame parseRequest refused; only the version and op checks tag their own. */
export function refusalOf(e: ExecgateError): "bad_request" | "unsupported_version" | "unknown_op" {
  const reply = e.detail.reply;
  return reply === "unsupported_version" || reply === "unknown_op" ? reply : "bad_request";
}

/** The request id, if one can be read at all (for replying to a malformed request). */
export function peekRequestId(frame: Uint8Array): number {
  try {
    const v = decode(frame, { maxDepth: 6, maxItems: 1024, maxLength: 64 * 1024 });
    const id = v instanceof Map ? v.get("id") : undefined;
    return typeof id === "number" && Number.isSafeInteger(id) && id >= 0 ? id : 0;
  } catch {
    return 0;
  }
}

export function encodeRequest(
  id: number,
  op: string,
  args: Record<string, CborValue | undefined>,
): Uint8Array {
  return encode({ v: PROTOCOL_VERSION, id, op, args });
}
