import {
  type CborKey,
  type CborValue,
  CborWriter,
  compareBytes,
  decode,
  encodeMapKey,
} from "../cbor/index.js";
import { type DenialCode, type DenialReason, isDenialCode, isDenialReason } from "../core/denial.js";
import { ExecgateError } from "../core/errors.js";
import { HASH_SIZE } from "./hash.js";

/**
 * Lineage entries and their deterministic-CBOR form (docs/lineage.md has the CDDL). The leaf
 * hash of an entry is SHA-256(0x00 || encodeEntry(entry)) (RFC 9162 §2.1.1), so the encoding must
 * be canonical: encodeEntry(decodeEntry(b)) = b for every accepted b. Decoding is a closed schema:
 * unknown fields, unknown types and wrong field types are rejected ("malformed").
 */

export const ENTRY_VERSION = 1;
/**
 * An entry is at most 64 KiB; larger evidence goes to the blob store by digest (docs/lineage.md).
 * New entries are one byte short of it, so that every entry fits a tlog-tiles entry bundle's uint16
 * length; reading accepts the full 64 KiB that earlier versions wrote (an export of a log holding
 * such an entry fails, with a message that says so, rather than the log becoming unreadable).
 */
export const MAX_ENTRY_BYTES = 0xffff;
export const MAX_ENTRY_READ_BYTES = 64 * 1024;
export const MAX_BACK_REFS = 64;

export const ENTRY_TYPES = [
  "daemon_start",
  "epoch",
  "request",
  "decision",
  "token_issued",
  "token_redeemed",
  "execution_report",
  "policy_loaded",
  "recovery",
  "daemon_stop",
  "denial_repeats",
] as const;
export type EntryType = (typeof ENTRY_TYPES)[number];

/** TPMS_CLOCK_INFO fields (TPM 2.0 Part 2 §10.11.1) as of the latest quote. */
export interface TpmTime {
  readonly clock: bigint | number;
  readonly resetCount: number;
  readonly restartCount: number;
}

export interface EntryTime {
  /** Wall clock, milliseconds since the Unix epoch. */
  readonly wallMs: number;
  /** Monotonic clock, microseconds (process.hrtime based; only ordered within one boot). */
  readonly monoUs: number;
  readonly tpm?: TpmTime;
}

/** A link to an earlier entry: its index and leaf hash (so a verifier can check both). */
export interface BackRef {
  readonly index: number;
  readonly leafHash: Uint8Array;
}

export interface DaemonStartBody {
  readonly reason: string;
  readonly configDigest: Uint8Array;
  readonly policyDigest: Uint8Array;
}
export interface EpochBody {
  /** The quote (TPMS_ATTEST ‖ TPMT_SIGNATURE as the TPM layer records it), or empty if in a blob. */
  readonly quote: Uint8Array;
  readonly issuerKey: Uint8Array;
  readonly verified: boolean;
  readonly reason?: DenialReason;
  /** SHA-256 digests of blobs (event logs, IMA lists, certificates) this epoch relied on. */
  readonly evidence?: readonly Uint8Array[];
  /**
   * HSM root (hsm.require = "hsm" or "tpm+hsm"): the HSM key's signature over the binding bytes
   * of `quote` (the epoch record), present when the HSM answered (docs/hsm.md).
   */
  readonly hsmSignature?: Uint8Array;
  /**
   * Digest of the policy whose integrity rules judged this epoch (a daemon_start or
   * policy_loaded entry of the same run names it). Absent in logs written before it was recorded.
   */
  readonly policyDigest?: Uint8Array;
}
export interface RequestBody {
  readonly requestId: string;
  readonly scope: string;
  readonly actionDigest: Uint8Array;
  readonly peer: {
    readonly uid: number;
    readonly gid: number;
    readonly pid: number;
    readonly exeDigest?: Uint8Array;
  };
}
export interface DecisionBody {
  readonly allow: boolean;
  readonly reason?: DenialReason;
  /** A finer code under the reason (DENIAL_CODES), e.g. frame_too_large under request_malformed. */
  readonly code?: DenialCode;
}
export interface TokenIssuedBody {
  readonly digest: Uint8Array;
}
export interface TokenRedeemedBody {
  readonly token: Uint8Array;
}
export interface ExecutionReportBody {
  readonly token: Uint8Array;
  readonly exitCode?: number;
  readonly signal?: string;
  readonly durationMs: number;
}
export interface PolicyLoadedBody {
  readonly policyDigest: Uint8Array;
  readonly source: string;
}
export interface RecoveryBody {
  readonly reason: string;
  readonly truncatedBytes: number;
  readonly recoveredSize: number;
}
export interface DaemonStopBody {
  readonly reason: string;
}
/**
 * Denials of one caller and reason (and code) counted instead of recorded, within one window
 * that a recorded decision opened (refs names it when that decision is durable): docs/lineage.md.
 */
export interface DenialRepeatsBody {
  readonly reason: DenialReason;
  readonly code?: DenialCode;
  /** The caller's uid; absent for peers that could not be identified. */
  readonly uid?: number;
  /** How many denials were counted (≥ 1). */
  readonly count: number;
  /** Wall clock of the first counted denial, ms; the last is this plus the monotonic time between. */
  readonly firstMs: number;
  readonly lastMs: number;
  /** The window's length (limits.denial_window_ms): lastMs − firstMs is less than it. */
  readonly windowMs: number;
}

export interface EntryBodies {
  daemon_start: DaemonStartBody;
  epoch: EpochBody;
  request: RequestBody;
  decision: DecisionBody;
  token_issued: TokenIssuedBody;
  token_redeemed: TokenRedeemedBody;
  execution_report: ExecutionReportBody;
  policy_loaded: PolicyLoadedBody;
  recovery: RecoveryBody;
  daemon_stop: DaemonStopBody;
  denial_repeats: DenialRepeatsBody;
}

export type Entry = {
  [T in EntryType]: {
    readonly version: number;
    readonly type: T;
    readonly time: EntryTime;
    readonly refs: readonly BackRef[];
    readonly body: EntryBodies[T];
  };
}[EntryType];

// ---- schema ---------------------------------------------------------------------------------

type Kind =
  | "uint"
  | "int"
  | "text"
  | "bytes"
  | "digest"
  | "bool"
  | "reason"
  | "code"
  | "digests"
  | "peer"
  | "tpm";
type Schema = Readonly<Record<string, { readonly kind: Kind; readonly optional?: true }>>;

const req = (kind: Kind) => ({ kind }) as const;
const opt = (kind: Kind) => ({ kind, optional: true }) as const;

const BODY_SCHEMAS: Readonly<Record<EntryType, Schema>> = {
  daemon_start: { reason: req("text"), configDigest: req("digest"), policyDigest: req("digest") },
  epoch: {
    quote: req("bytes"),
    issuerKey: req("bytes"),
    verified: req("bool"),
    reason: opt("reason"),
    evidence: opt("digests"),
    hsmSignature: opt("bytes"),
    policyDigest: opt("digest"),
  },
  request: { requestId: req("text"), scope: req("text"), actionDigest: req("digest"), peer: req("peer") },
  decision: { allow: req("bool"), reason: opt("reason"), code: opt("code") },
  token_issued: { digest: req("digest") },
  token_redeemed: { token: req("bytes") },
  execution_report: {
    token: req("bytes"),
    exitCode: opt("int"),
    signal: opt("text"),
    durationMs: req("uint"),
  },
  policy_loaded: { policyDigest: req("digest"), source: req("text") },
  recovery: { reason: req("text"), truncatedBytes: req("uint"), recoveredSize: req("uint") },
  daemon_stop: { reason: req("text") },
  denial_repeats: {
    reason: req("reason"),
    code: opt("code"),
    uid: opt("uint"),
    count: req("uint"),
    firstMs: req("uint"),
    lastMs: req("uint"),
    windowMs: req("uint"),
  },
};

const PEER_SCHEMA: Schema = {
  uid: req("uint"),
  gid: req("uint"),
  pid: req("uint"),
  exeDigest: opt("digest"),
};
const TPM_SCHEMA: Schema = { clock: req("uint"), resetCount: req("uint"), restartCount: req("uint") };
const TIME_SCHEMA: Schema = { wallMs: req("uint"), monoUs: req("uint"), tpm: opt("tpm") };

function bad(message: string): ExecgateError {
  return new ExecgateError("malformed", `lineage entry: ${message}`);
}

function isUint(v: unknown): v is number | bigint {
  return (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) || (typeof v === "bigint" && v >= 0n);
}

function checkKind(kind: Kind, v: unknown, where: string): CborValue {
  switch (kind) {
    case "uint":
      if (!isUint(v)) throw bad(`${where} must be an unsigned integer`);
      return v;
    case "int":
      if (!(typeof v === "number" && Number.isSafeInteger(v))) throw bad(`${where} must be an integer`);
      return v;
    case "text":
      if (typeof v !== "string") throw bad(`${where} must be text`);
      return v;
    case "bytes":
      if (!(v instanceof Uint8Array)) throw bad(`${where} must be bytes`);
      return v;
    case "digest":
      if (!(v instanceof Uint8Array) || v.length !== HASH_SIZE)
        throw bad(`${where} must be a 32-byte digest`);
      return v;
    case "bool":
      if (typeof v !== "boolean") throw bad(`${where} must be a boolean`);
      return v;
    case "reason":
      if (!isDenialReason(v)) throw bad(`${where} must be a denial reason`);
      return v;
    case "code":
      if (!isDenialCode(v)) throw bad(`${where} must be a denial code`);
      return v;
    case "digests":
      if (!Array.isArray(v)) throw bad(`${where} must be an array of digests`);
      return (v as unknown[]).map((d, i) => checkKind("digest", d, `${where}[${i}]`));
    case "peer":
      return toMap(v, PEER_SCHEMA, where);
    case "tpm":
      return toMap(v, TPM_SCHEMA, where);
    default:
      throw bad(`${where}: no such field kind ${String(kind)}`);
  }
}

/** Object (encode side) → Map, validating against the schema; undefined optional fields omitted. */
function toMap(v: unknown, schema: Schema, where: string): Map<CborKey, CborValue> {
  if (typeof v !== "object" || v === null) throw bad(`${where} must be a map`);
  const src = v instanceof Map ? (v as Map<unknown, unknown>) : new Map(Object.entries(v));
  const out = new Map<CborKey, CborValue>();
  for (const [k, val] of src) {
    // Own fields only: `in` would also find constructor, toString, __proto__… on the prototype.
    if (typeof k !== "string" || !Object.hasOwn(schema, k)) throw bad(`${where}: unknown field ${String(k)}`);
    if (val === undefined) continue;
    const spec = schema[k]!;
    out.set(k, checkKind(spec.kind, val, `${where}.${k}`));
  }
  for (const [k, spec] of Object.entries(schema)) {
    if (spec.optional !== true && !out.has(k)) throw bad(`${where}: missing field ${k}`);
  }
  return out;
}

/** Map (decode side) → plain object, same validation. */
function fromMap(v: CborValue, schema: Schema, where: string): Record<string, unknown> {
  if (!(v instanceof Map)) throw bad(`${where} must be a map`);
  const checked = toMap(v, schema, where);
  const out: Record<string, unknown> = {};
  for (const [k, val] of checked) {
    const key = k as string;
    if (val instanceof Map) out[key] = Object.fromEntries(val as Map<string, CborValue>);
    else out[key] = val;
  }
  return out;
}

// ---- encode / decode ------------------------------------------------------------------------

/**
 * Encode side, driven by the schema: each plain object is checked field by field and written
 * straight into a CBOR writer, with its keys pre-encoded and pre-sorted in the deterministic order
 * (RFC 8949 §4.2.1) — no intermediate object tree, no per-call key sorting. The bytes are exactly
 * what the generic encoder gives for the same value (test/property/lineage-entry-encode.test.ts).
 * Unknown fields are rejected, so what is encoded is exactly what the schema allows.
 */
interface Field {
  readonly name: string;
  readonly key: Uint8Array;
  readonly kind: Kind;
  readonly optional: boolean;
}

function compile(schema: Schema): readonly Field[] {
  return Object.entries(schema)
    .map(([name, spec]) => ({
      name,
      key: encodeMapKey(name),
      kind: spec.kind,
      optional: spec.optional === true,
    }))
    .sort((a, b) => compareBytes(a.key, b.key));
}

const COMPILED = new Map<Schema, readonly Field[]>(
  [...Object.values(BODY_SCHEMAS), PEER_SCHEMA, TPM_SCHEMA, TIME_SCHEMA].map((sc) => [sc, compile(sc)]),
);

function writeObject(w: CborWriter, v: unknown, schema: Schema, where: string): void {
  if (typeof v !== "object" || v === null || v instanceof Map || Array.isArray(v))
    throw bad(`${where} must be an object`);
  const obj = v as Readonly<Record<string, unknown>>;
  for (const k of Object.keys(obj)) if (!Object.hasOwn(schema, k)) throw bad(`${where}: unknown field ${k}`);
  const fields = COMPILED.get(schema)!;
  let present = 0;
  for (const f of fields) {
    if (obj[f.name] !== undefined) present += 1;
    else if (!f.optional) throw bad(`${where}: missing field ${f.name}`);
  }
  w.mapHead(present);
  for (const f of fields) {
    const val = obj[f.name];
    if (val === undefined) continue;
    w.raw(f.key);
    writeKind(w, f.kind, val, `${where}.${f.name}`);
  }
}

function writeKind(w: CborWriter, kind: Kind, v: unknown, where: string): void {
  switch (kind) {
    case "peer":
      writeObject(w, v, PEER_SCHEMA, where);
      return;
    case "tpm":
      writeObject(w, v, TPM_SCHEMA, where);
      return;
    case "digests": {
      const list = checkKind("digests", v, where) as Uint8Array[];
      w.arrayHead(list.length);
      for (const d of list) w.byteString(d);
      return;
    }
    case "uint":
    case "int":
      w.int(checkKind(kind, v, where) as number | bigint);
      return;
    case "text":
    case "reason":
    case "code":
      w.text(checkKind(kind, v, where) as string);
      return;
    case "bytes":
    case "digest":
      w.byteString(checkKind(kind, v, where) as Uint8Array);
      return;
    case "bool":
      w.bool(checkKind(kind, v, where) as boolean);
      return;
  }
}

const KEY_V = encodeMapKey("v");
const KEY_BODY = encodeMapKey("body");
const KEY_REFS = encodeMapKey("refs");
const KEY_TIME = encodeMapKey("time");
const KEY_TYPE = encodeMapKey("type");
const writer = new CborWriter();

/** Encodes an entry; throws "malformed" if it breaks the schema, "limit_exceeded" above 64 KiB. */
export function encodeEntry(e: Entry): Uint8Array {
  if (e.version !== ENTRY_VERSION) throw bad(`unsupported version ${e.version}`);
  const schema = BODY_SCHEMAS[e.type];
  if (schema === undefined) throw bad(`unknown type ${String(e.type)}`);
  if (e.refs.length > MAX_BACK_REFS) throw bad(`more than ${MAX_BACK_REFS} back-references`);
  let bytes: Uint8Array;
  try {
    // Top-level keys in deterministic order: "v", then the 4-letter keys bytewise.
    writer.mapHead(5);
    writer.raw(KEY_V);
    writer.int(e.version);
    writer.raw(KEY_BODY);
    writeObject(writer, e.body, schema, "body");
    writer.raw(KEY_REFS);
    writer.arrayHead(e.refs.length);
    for (let i = 0; i < e.refs.length; i++) {
      const r = e.refs[i]!;
      writer.arrayHead(2);
      writer.int(checkKind("uint", r.index, `refs[${i}].index`) as number);
      writer.byteString(checkKind("digest", r.leafHash, `refs[${i}].leafHash`) as Uint8Array);
    }
    writer.raw(KEY_TIME);
    writeObject(writer, e.time, TIME_SCHEMA, "time");
    writer.raw(KEY_TYPE);
    writer.text(e.type);
    bytes = writer.finish();
  } catch (err) {
    writer.clear();
    throw err;
  }
  if (bytes.length > MAX_ENTRY_BYTES) {
    throw new ExecgateError("limit_exceeded", `lineage entry: ${bytes.length} bytes > ${MAX_ENTRY_BYTES}`);
  }
  return bytes;
}

const ENTRY_KEYS = new Set(["v", "type", "time", "refs", "body"]);

export function decodeEntry(bytes: Uint8Array): Entry {
  if (bytes.length > MAX_ENTRY_READ_BYTES) {
    throw new ExecgateError(
      "limit_exceeded",
      `lineage entry: ${bytes.length} bytes > ${MAX_ENTRY_READ_BYTES}`,
    );
  }
  const top = decode(bytes, { maxDepth: 8, maxItems: 8192 });
  if (!(top instanceof Map)) throw bad("not a map");
  for (const k of top.keys())
    if (typeof k !== "string" || !ENTRY_KEYS.has(k)) throw bad(`unknown field ${String(k)}`);
  const version = top.get("v");
  if (version !== ENTRY_VERSION) throw bad(`unsupported version ${String(version)}`);
  const type = top.get("type");
  if (typeof type !== "string" || !(ENTRY_TYPES as readonly string[]).includes(type))
    throw bad("unknown type");
  const timeV = top.get("time");
  const refsV = top.get("refs");
  const bodyV = top.get("body");
  if (timeV === undefined || refsV === undefined || bodyV === undefined) throw bad("missing field");
  const time = fromMap(timeV, TIME_SCHEMA, "time");
  if (!Array.isArray(refsV)) throw bad("refs must be an array");
  if (refsV.length > MAX_BACK_REFS) throw bad(`more than ${MAX_BACK_REFS} back-references`);
  const refs: BackRef[] = (refsV as readonly CborValue[]).map((r, i) => {
    if (!Array.isArray(r) || r.length !== 2) throw bad(`refs[${i}] must be [index, leafHash]`);
    const [index, leafHash] = r as readonly CborValue[];
    if (typeof index !== "number" || !isUint(index))
      throw bad(`refs[${i}].index must be an unsigned integer`);
    checkKind("digest", leafHash, `refs[${i}].leafHash`);
    return { index, leafHash: leafHash as Uint8Array };
  });
  const body = fromMap(bodyV, BODY_SCHEMAS[type as EntryType], "body");
  return { version, type, time, refs, body } as unknown as Entry;
}

/** Helper for writers: an entry of type T with the current version. */
export function makeEntry<T extends EntryType>(
  type: T,
  time: EntryTime,
  body: EntryBodies[T],
  refs: readonly BackRef[] = [],
): Extract<Entry, { type: T }> {
  return { version: ENTRY_VERSION, type, time, refs, body } as unknown as Extract<Entry, { type: T }>;
}
