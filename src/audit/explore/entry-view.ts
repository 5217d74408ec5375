import { decodeEpochRecord } from "../../attest/record.js";
import { decode } from "../../cbor/index.js";
import { asExecgateError } from "../../core/errors.js";
import { bytesEqual, toHex } from "../../core/hex.js";
import { type BackRef, decodeEntry, type Entry, type EntryType } from "../../lineage/entry.js";
import { leafHash, sha256 } from "../../lineage/hash.js";
import { claimsFromCbor, type TokenClaims, tokenIdFor } from "../../token/claims.js";
import { decodeToken } from "../../token/token.js";
import { hashAlgInfo } from "../../tpm/constants.js";
import { parsePcrsFile } from "../../tpm/structures/pcrs-file.js";
import { type Json, toJson } from "./json.js";

/**
 * One lineage entry as an auditor reads it (pure): decoded, its back-references resolved, and
 * who and why pulled up from wherever today's entries keep them (a decision's request, a token's
 * claims). Fields a later entry version adds (exe path, unit, executors, a denial's detail) are
 * shown when present; the body is kept whole, as JSON, either way.
 */

/** The bytes of entry `index` in the same bundle, or undefined if it cannot be read. */
export type EntryLookup = (index: number) => Uint8Array | undefined;

/** The caller as the kernel saw it, as far as this entry and its references say. */
export interface Caller {
  readonly uid?: number;
  readonly gid?: number;
  readonly pid?: number;
  readonly exeDigest?: string;
  readonly exePath?: string;
  readonly unit?: string;
  /** The executor names the policy matched (entries that record them). */
  readonly executors?: readonly string[];
  /** Which entry said so: its index and type (the decision itself, its request, a token's claims). */
  readonly from: { readonly index: number; readonly type: EntryType | "token" };
}

export interface ResolvedRef {
  readonly index: number;
  readonly leafHash: string;
  /** ok: the entry there has this leaf hash; otherwise why the reference could not be followed. */
  readonly status: "ok" | "missing" | "leaf_mismatch" | "undecodable";
  readonly type?: EntryType;
  readonly wallMs?: number;
}

export interface PcrValue {
  readonly bank: string;
  readonly index: number;
  readonly value: string;
}

/** What one epoch attested: its id (SHA-256 of the binding, the quote's qualifyingData) and state. */
export interface EpochView {
  readonly id: string;
  readonly seq: number;
  readonly prev: string;
  readonly boot: string;
  readonly checkpoint: { readonly size: number; readonly root: string };
  readonly verified: boolean;
  readonly reason?: string;
  readonly quirks?: readonly string[];
  readonly policyDigest?: string;
  readonly pcrs: readonly PcrValue[];
  readonly quoted: boolean;
  readonly hsmSigned: boolean;
  readonly evidence: readonly string[];
}

export interface Denial {
  readonly reason: string;
  readonly code?: string;
  /** A structured or textual detail, when the entry records one (schema v2). */
  readonly detail?: Json;
  /** denial_repeats: how many denials of this caller and reason were counted, and when. */
  readonly count?: number;
  readonly firstMs?: number;
  readonly lastMs?: number;
}

export interface ExploredEntry {
  readonly index: number;
  readonly leafHash: string;
  readonly version: number;
  readonly type: EntryType;
  readonly time: {
    readonly wallMs: number;
    readonly iso: string;
    readonly monoUs: number;
    readonly tpm?: Json;
  };
  readonly body: Json;
  readonly refs: readonly ResolvedRef[];
  readonly caller?: Caller;
  readonly allow?: boolean;
  readonly denial?: Denial;
  readonly scope?: string;
  /** The token id (cti, hex) this entry belongs to: an allow, its token_issued, redeem, report. */
  readonly tokenId?: string;
  /** The allow decision a token entry hangs off (the cti's index). */
  readonly decisionIndex?: number;
  /** The epoch this entry is (type epoch) or was decided on (a decision, or a token's claim). */
  readonly epochId?: string;
  readonly epoch?: EpochView;
  /** token_redeemed: the token's claims as issued (read, not verified: audit verify does that). */
  readonly token?: Json;
  /** Why part of the entry could not be explained (its bytes still verified, or not, elsewhere). */
  readonly problems?: readonly string[];
}

interface Decoded {
  readonly entry: Entry;
  readonly leaf: Uint8Array;
}

/** What the cache holds for an index: the entry, or only the leaf hash of bytes that do not decode. */
interface Cached {
  readonly entry?: Entry;
  readonly leaf: Uint8Array;
}

/** Decodes entry bytes; the leaf hash is computed from exactly these bytes. */
export function decodeAt(bytes: Uint8Array): Decoded {
  return { entry: decodeEntry(bytes), leaf: leafHash(bytes) };
}

/**
 * Entries already decoded, by index, so a reference many entries name (an epoch every decision
 * names) is hashed and decoded once. Bounded: the oldest is dropped first. A hit is still held to
 * the reference's leaf hash.
 */
export class ExplainCache {
  private readonly decoded = new Map<number, Cached | undefined>();
  private readonly epochIds = new Map<number, string>();
  constructor(private readonly max = 1024) {}

  get(index: number, lookup: EntryLookup): Cached | undefined {
    if (this.decoded.has(index)) return this.decoded.get(index);
    const bytes = lookup(index);
    let d: Cached | undefined;
    if (bytes !== undefined) {
      try {
        d = decodeAt(bytes);
      } catch {
        d = { leaf: leafHash(bytes) };
      }
    }
    this.put(this.decoded, index, d);
    return d;
  }

  epochId(index: number, entry: Extract<Entry, { type: "epoch" }>): string {
    let id = this.epochIds.get(index);
    if (id === undefined) {
      id = epochIdOf(entry);
      this.put(this.epochIds, index, id);
    }
    return id;
  }

  private put<V>(m: Map<number, V>, k: number, v: V): void {
    m.set(k, v);
    if (m.size > this.max) m.delete(m.keys().next().value!);
  }
}

/** Follows a back-reference, checking the entry found has the leaf hash the reference names. */
function follow(
  ref: BackRef,
  lookup: EntryLookup,
  cache: ExplainCache,
): { view: ResolvedRef; target?: Decoded } {
  const base = { index: ref.index, leafHash: toHex(ref.leafHash) };
  const d = cache.get(ref.index, lookup);
  if (d === undefined) return { view: { ...base, status: "missing" } };
  if (!bytesEqual(d.leaf, ref.leafHash)) return { view: { ...base, status: "leaf_mismatch" } };
  if (d.entry === undefined) return { view: { ...base, status: "undecodable" } };
  return {
    view: { ...base, status: "ok", type: d.entry.type, wallMs: d.entry.time.wallMs },
    target: { entry: d.entry, leaf: d.leaf },
  };
}

/** Reads a token's claims without verifying its signature (audit verify checks every redeemed one). */
export function tokenClaimsOf(token: Uint8Array): TokenClaims {
  return claimsFromCbor(decode(decodeToken(token).payload));
}

/** An epoch entry's id, SHA-256 of its binding (without reading its PCRs: every decision asks). */
export function epochIdOf(entry: Extract<Entry, { type: "epoch" }>): string {
  return toHex(sha256(decodeEpochRecord(entry.body.quote).bindingBytes));
}

/** The epoch record in an epoch entry, as the auditor reads it. */
export function epochView(entry: Extract<Entry, { type: "epoch" }>): EpochView {
  const rec = decodeEpochRecord(entry.body.quote);
  const b = rec.binding;
  const pcrs: PcrValue[] = [];
  if (rec.pcrs) {
    const file = parsePcrsFile(rec.pcrs);
    for (const [alg, values] of file.values)
      for (const [index, value] of [...values].sort((x, y) => x[0] - y[0]))
        pcrs.push({ bank: hashAlgInfo(alg)?.name ?? `0x${alg.toString(16)}`, index, value: toHex(value) });
  }
  const reason = entry.body.reason ?? rec.reason;
  return {
    id: toHex(sha256(rec.bindingBytes)),
    seq: b.seq,
    prev: toHex(b.prev),
    boot: b.bootId,
    checkpoint: { size: b.checkpoint.size, root: toHex(b.checkpoint.root) },
    verified: entry.body.verified,
    ...(reason !== undefined ? { reason } : {}),
    ...(rec.quirks && rec.quirks.length > 0 ? { quirks: rec.quirks } : {}),
    ...(entry.body.policyDigest ? { policyDigest: toHex(entry.body.policyDigest) } : {}),
    pcrs,
    quoted: rec.attest !== undefined && rec.signature !== undefined,
    hsmSigned: entry.body.hsmSignature !== undefined,
    evidence: (entry.body.evidence ?? []).map(toHex),
  };
}

/** A field a later schema version may add, read from the decoded body without trusting its type. */
function field(obj: unknown, key: string): unknown {
  return typeof obj === "object" && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === "number" ? v : undefined;
}

/** The caller a peer map says (request.peer today; v2 decisions may carry the same shape). */
function callerOfPeer(peer: unknown, from: Caller["from"], executors?: unknown): Caller {
  const exe = field(peer, "exeDigest") ?? field(peer, "exe");
  const names = executors ?? field(peer, "executors");
  const uid = num(field(peer, "uid"));
  const gid = num(field(peer, "gid"));
  const pid = num(field(peer, "pid"));
  const exePath = str(field(peer, "exePath"));
  const unit = str(field(peer, "unit"));
  return {
    ...(uid !== undefined ? { uid } : {}),
    ...(gid !== undefined ? { gid } : {}),
    ...(pid !== undefined ? { pid } : {}),
    ...(exe instanceof Uint8Array ? { exeDigest: toHex(exe) } : {}),
    ...(exePath !== undefined ? { exePath } : {}),
    ...(unit !== undefined ? { unit } : {}),
    ...(Array.isArray(names) ? { executors: names.filter((n): n is string => typeof n === "string") } : {}),
    from,
  };
}

function callerOfClaims(c: TokenClaims, index: number): Caller {
  return {
    uid: c.peer.uid,
    gid: c.peer.gid,
    pid: c.peer.pid,
    exeDigest: toHex(c.peer.exe),
    ...(c.peer.unit !== undefined ? { unit: c.peer.unit } : {}),
    from: { index, type: "token" },
  };
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

/** What a decision says through its references: the request's caller and scope, the epoch's id. */
function decisionContext(
  refs: readonly { view: ResolvedRef; target?: Decoded }[],
  problems: string[],
  cache: ExplainCache,
): { caller?: Caller; scope?: string; epochId?: string } {
  let caller: Caller | undefined;
  let scope: string | undefined;
  let epochId: string | undefined;
  for (const r of refs) {
    const t = r.target;
    if (t === undefined) continue;
    if (t.entry.type === "request") {
      caller = callerOfPeer(t.entry.body.peer, { index: r.view.index, type: "request" });
      scope = t.entry.body.scope;
    } else if (t.entry.type === "epoch") {
      try {
        epochId = cache.epochId(r.view.index, t.entry);
      } catch (e) {
        problems.push(`epoch ${r.view.index}: ${asExecgateError(e).message}`);
      }
    }
  }
  return {
    ...(caller ? { caller } : {}),
    ...(scope !== undefined ? { scope } : {}),
    ...(epochId !== undefined ? { epochId } : {}),
  };
}

/**
 * Explains entry `index` (its bytes): decoded, references followed through `lookup` (one level,
 * two for token_issued → decision → request), and the caller, denial, token id and epoch it
 * concerns. Throws ExecgateError("malformed") only if the entry itself does not decode.
 */
export function explainEntry(
  index: number,
  bytes: Uint8Array,
  lookup: EntryLookup,
  cache: ExplainCache = new ExplainCache(),
): ExploredEntry {
  const { entry, leaf } = decodeAt(bytes);
  const problems: string[] = [];
  const followed = entry.refs.map((r) => follow(r, lookup, cache));
  for (const f of followed)
    if (f.view.status !== "ok") problems.push(`ref ${f.view.index}: ${f.view.status.replace("_", " ")}`);
  const tpm = entry.time.tpm;
  const base = {
    index,
    leafHash: toHex(leaf),
    version: entry.version,
    type: entry.type,
    time: {
      wallMs: entry.time.wallMs,
      iso: iso(entry.time.wallMs),
      monoUs: entry.time.monoUs,
      ...(tpm ? { tpm: toJson(tpm) } : {}),
    },
    body: toJson(entry.body),
    refs: followed.map((f) => f.view),
  };
  const extra: Record<string, unknown> = {};
  switch (entry.type) {
    case "request":
      extra.caller = callerOfPeer(entry.body.peer, { index, type: "request" });
      extra.scope = entry.body.scope;
      break;
    case "decision": {
      const ctx = decisionContext(followed, problems, cache);
      Object.assign(extra, ctx);
      const own = field(entry.body, "peer");
      if (own !== undefined)
        extra.caller = callerOfPeer(own, { index, type: "decision" }, field(entry.body, "executors"));
      extra.allow = entry.body.allow;
      // A denial naming an allow (a token redeemed again, or withdrawn) belongs to that token.
      const allow = followed.find((f) => f.target?.entry.type === "decision");
      if (allow?.target) {
        extra.tokenId = toHex(tokenIdFor(allow.view.index, allow.target.leaf));
        extra.decisionIndex = allow.view.index;
      }
      if (entry.body.allow) {
        extra.tokenId = toHex(tokenIdFor(index, leaf));
        extra.decisionIndex = index;
      } else {
        const detail = field(entry.body, "detail");
        extra.denial = {
          reason: entry.body.reason ?? "unknown",
          ...(entry.body.code ? { code: entry.body.code } : {}),
          ...(detail !== undefined ? { detail: toJson(detail) } : {}),
        };
      }
      break;
    }
    case "token_issued": {
      const d = followed.find((f) => f.target?.entry.type === "decision");
      if (d?.target) {
        extra.tokenId = toHex(tokenIdFor(d.view.index, d.target.leaf));
        extra.decisionIndex = d.view.index;
        const inner = d.target.entry.refs.map((r) => follow(r, lookup, cache));
        Object.assign(extra, decisionContext(inner, problems, cache));
      }
      break;
    }
    case "token_redeemed": {
      const d = followed.find((f) => f.target?.entry.type === "decision");
      if (d) extra.decisionIndex = d.view.index;
      try {
        const c = tokenClaimsOf(entry.body.token);
        extra.tokenId = toHex(c.cti);
        extra.caller = callerOfClaims(c, index);
        extra.scope = c.scope;
        extra.epochId = toHex(c.epoch);
        extra.token = toJson({ ...c, lineage: { index: c.lineage[0], leafHash: c.lineage[1] } });
      } catch (e) {
        problems.push(`token: ${asExecgateError(e).message}`);
      }
      break;
    }
    case "execution_report": {
      extra.tokenId = toHex(entry.body.token);
      const r = followed.find((f) => f.target?.entry.type === "token_redeemed");
      if (r?.target?.entry.type === "token_redeemed") {
        const d = r.target.entry.refs[0];
        if (d) extra.decisionIndex = d.index;
        try {
          const c = tokenClaimsOf(r.target.entry.body.token);
          extra.caller = callerOfClaims(c, r.view.index);
          extra.scope = c.scope;
          extra.epochId = toHex(c.epoch);
        } catch (e) {
          problems.push(`token of entry ${r.view.index}: ${asExecgateError(e).message}`);
        }
      }
      break;
    }
    case "epoch":
      try {
        const ev = epochView(entry);
        extra.epoch = ev;
        extra.epochId = ev.id;
        if (ev.reason !== undefined && !ev.verified) extra.denial = { reason: ev.reason };
      } catch (e) {
        problems.push(`epoch record: ${asExecgateError(e).message}`);
      }
      break;
    case "denial_repeats": {
      const b = entry.body;
      extra.denial = {
        reason: b.reason,
        ...(b.code ? { code: b.code } : {}),
        count: b.count,
        firstMs: b.firstMs,
        lastMs: b.lastMs,
      };
      // The decision that opened the window names the request (and so the caller) when there was one.
      const first = followed.find((f) => f.target?.entry.type === "decision");
      const ctx = first?.target
        ? decisionContext(
            first.target.entry.refs.map((r) => follow(r, lookup, cache)),
            problems,
            cache,
          )
        : {};
      if (ctx.caller) extra.caller = ctx.caller;
      else if (b.uid !== undefined) extra.caller = { uid: b.uid, from: { index, type: "denial_repeats" } };
      if (ctx.scope !== undefined) extra.scope = ctx.scope;
      break;
    }
    default:
      break;
  }
  return { ...base, ...extra, ...(problems.length > 0 ? { problems } : {}) } as ExploredEntry;
}
