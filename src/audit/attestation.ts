import type { KeyObject } from "node:crypto";
import { decodeEpochRecord, type EpochRecord } from "../attest/record.js";
import { decode } from "../cbor/index.js";
import { codeFitsReason } from "../core/denial.js";
import { digest } from "../core/digest.js";
import { asExecgateError } from "../core/errors.js";
import { bytesEqual, toHex } from "../core/hex.js";
import { verifyHsmEpoch } from "../hsm/epoch.js";
import type { DenialRepeatsBody, Entry } from "../lineage/entry.js";
import { claimsFromCbor, type TokenClaims } from "../token/claims.js";
import { COSE_ALG, type CoseSign1, ed25519PublicKey, verifySign1 } from "../token/cose.js";
import { decodeToken } from "../token/token.js";
import type { PcrSelection } from "../tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../tpm/structures/pcrs-file.js";
import { verifyQuote } from "../tpm/verify-quote.js";
import { RecentCallers } from "./recent.js";
import type { AuditFailure } from "./verify.js";

/*
 * The attestation half of the offline audit (pure): what the daemon claims about epochs,
 * decisions and tokens, re-derived from the bytes in the log.
 *   epochs:    record decodes; issuer key in the entry = the one bound; seq/prev chain within a
 *              daemon run; the bound checkpoint is a signed checkpoint no larger than the log
 *              before it; the quote verifies with the AK over SHA-256(binding) (a "verified"
 *              epoch without a valid quote is a failure); the TPM clock never goes back within
 *              one resetCount/restartCount; the policy that judged it was loaded by the run
 *              (daemon_start, policy_loaded).
 *   decisions: every allow names a verified epoch entry; a denial's code belongs to its reason.
 *   denial_repeats: a positive count within one sane window, of the reason and caller of the
 *              recorded denial that opened the window (if named: each is named once).
 *   tokens:    each redeemed token is signed by the issuer key its epoch bound, names that
 *              epoch and the policy that judged it, carries the host's ueid, was issued
 *              (token_issued with its digest) before, names an allow decision, and is redeemed
 *              once: once per allow decision, and its id once per run.
 */

export interface AttestationAuditInput extends AttestationOptions {
  /** All entries in log order (index = position). */
  readonly entries: readonly Entry[];
}

export interface AttestationOptions {
  /** Signed checkpoints that verified (size → root). */
  readonly checkpoints: ReadonlyMap<number, Uint8Array>;
  /** The AK that signs quotes (from the enrollment record); without it quotes cannot be checked. */
  readonly akPublic: KeyObject | undefined;
  /** Every epoch must carry a verifying TPM quote (default true). */
  readonly requireTpm?: boolean;
  /** The HSM root key: every HSM signature an epoch carries must verify with it, and it may sign tokens directly. */
  readonly hsmPublic?: KeyObject;
  /** Every verified epoch must carry the HSM key's signature (default: whenever hsmPublic is given). */
  readonly requireHsmEpochs?: boolean;
  /** The host's ueid (from ek.pub, or the HSM key without a TPM): every redeemed token must carry it. */
  readonly ueid?: Uint8Array;
  /** The PCR selection every quote must cover exactly (default: the one recorded with each quote). */
  readonly selection?: PcrSelection;
  readonly allowSha1?: boolean;
}

export interface AttestationSummary {
  readonly epochs: number;
  readonly verifiedEpochs: number;
  readonly allows: number;
  readonly tokensRedeemed: number;
  readonly failures: readonly AuditFailure[];
}

const sha256 = (b: Uint8Array): Uint8Array => digest("sha256", b);
/** A byte string as a map key: one character per byte, half the size of hex (one per token). */
const key = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const ZERO32 = new Uint8Array(32);

/** Tokens are signed by the epoch's in-memory issuer key (EdDSA) or, with token_signer = "hsm", by the HSM key. */
function tokenSignatureOk(msg: CoseSign1, issuer: Uint8Array, hsm: KeyObject | undefined): boolean {
  if (msg.alg === COSE_ALG.EdDSA && verifySign1(msg, ed25519PublicKey(issuer))) return true;
  return hsm !== undefined && verifySign1(msg, hsm);
}

interface EpochInfo {
  readonly index: number;
  readonly hash: Uint8Array;
  /** The issuer key its binding names (signs its tokens). */
  readonly issuer: Uint8Array;
  readonly verified: boolean;
  /** The policy that judged it (absent in logs from before it was recorded). */
  readonly policyDigest: Uint8Array | undefined;
}

export function auditAttestation(input: AttestationAuditInput): AttestationSummary {
  const a = attestationAuditor(input);
  for (let i = 0; i < input.entries.length; i++) a.push(i, input.entries[i]!);
  return a.finish();
}

/** What the audit keeps of each entry to check later ones against (one byte per entry). */
const KIND = { other: 0, allow: 1, denial: 2, request: 3 } as const;

/** The entries' kinds, one byte each, grown by doubling. */
class KindColumn {
  private buf = new Uint8Array(1 << 16);
  set(i: number, k: number): void {
    if (i >= this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, i + 1));
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[i] = k;
  }
  get(i: number): number {
    return i >= 0 && i < this.buf.length ? this.buf[i]! : KIND.other;
  }
}

/**
 * The attestation audit fed one entry at a time, in log order (a bundle of any size streams
 * through it): what later entries are checked against is kept compactly, not the entries.
 */
export function attestationAuditor(input: AttestationOptions): {
  push(index: number, e: Entry): void;
  finish(): AttestationSummary;
} {
  const kinds = new KindColumn();
  const recent = new RecentCallers();
  const failures: AuditFailure[] = [];
  const fail = (check: string, index: number, reason: string): void => {
    failures.push({ check, index, reason });
  };
  const epochsByHash = new Map<string, EpochInfo>();
  const epochsByIndex = new Map<number, EpochInfo>();
  const clocks = new Map<string, bigint>();
  let prev: { hash: Uint8Array; seq: number } | undefined;
  /** Digests of the policies this run has loaded so far (daemon_start, policy_loaded). */
  const policies = new Set<string>();
  let verifiedEpochs = 0;
  let allows = 0;
  const issued = new Map<string, number>();
  /**
   * Single use, keyed on the allow decision a token names (one allow, one token): token ids of
   * logs written before they were bound to the decision restart with each run, so they are unique
   * only within a run, and are checked as such.
   */
  const redeemedDecisions = new Map<number, number>();
  const runIds = new Set<string>();
  /** Decisions a denial_repeats entry named as its window's first: each opens one window. */
  const namedByRepeats = new Set<number>();
  let tokensRedeemed = 0;
  const requireTpm = input.requireTpm ?? true;
  const requireHsmEpochs = input.requireHsmEpochs ?? input.hsmPublic !== undefined;
  if (requireTpm && !input.akPublic) {
    failures.push({ check: "ak", reason: "no AK public key in the bundle: quotes cannot be verified" });
  }

  const push = (index: number, e: Entry): void => {
    if (e.type !== "request" && e.type !== "decision") recent.other(index);
    switch (e.type) {
      case "request":
        kinds.set(index, KIND.request);
        recent.request(index, e.body.peer.uid);
        break;
      case "daemon_start":
        prev = undefined; // a new run starts a new epoch chain
        runIds.clear(); // and its own token ids
        policies.clear(); // and loads its policy afresh
        policies.add(toHex(e.body.policyDigest));
        break;
      case "policy_loaded":
        policies.add(toHex(e.body.policyDigest));
        break;
      case "epoch": {
        let rec: EpochRecord;
        try {
          rec = decodeEpochRecord(e.body.quote);
        } catch (err) {
          fail("epoch_record", index, asExecgateError(err).message);
          return;
        }
        const b = rec.binding;
        const hash = sha256(rec.bindingBytes);
        if (!bytesEqual(e.body.issuerKey, b.issuer))
          fail("epoch_issuer", index, "issuer key differs from the bound one");
        if (e.body.verified !== rec.verified)
          fail("epoch_record", index, "entry and record disagree on verified");
        if (
          prev === undefined
            ? b.seq !== 0 || !bytesEqual(b.prev, ZERO32)
            : b.seq !== prev.seq + 1 || !bytesEqual(b.prev, prev.hash)
        ) {
          fail("epoch_chain", index, `seq ${b.seq} does not follow the previous epoch of this run`);
        }
        prev = { hash, seq: b.seq };
        if (b.checkpoint.size > 0) {
          const root = input.checkpoints.get(b.checkpoint.size);
          if (!root || !bytesEqual(root, b.checkpoint.root)) {
            fail(
              "epoch_checkpoint",
              index,
              `binds checkpoint ${b.checkpoint.size} that is not a signed checkpoint of this log`,
            );
          } else if (b.checkpoint.size > index) {
            fail("epoch_checkpoint", index, "binds a checkpoint larger than the log before it");
          }
        }
        let quoteOk = false;
        if (rec.attest && rec.signature && rec.pcrs && input.akPublic) {
          try {
            const pcrs = parsePcrsFile(rec.pcrs);
            const v = verifyQuote({
              attest: rec.attest,
              signature: rec.signature,
              akPublic: input.akPublic,
              expectedQualifyingData: hash,
              expectedSelection: input.selection ?? pcrs.selection,
              pcrValues: pcrs.values,
              ...(input.allowSha1 ? { allowSha1: true } : {}),
            });
            if (v.ok) {
              quoteOk = true;
              const key = `${v.quote.resetCount}/${v.quote.restartCount}`;
              const last = clocks.get(key);
              if (last !== undefined && v.quote.clock < last)
                fail("tpm_clock", index, `TPM clock went back within ${key}`);
              clocks.set(key, v.quote.clock);
            } else if (rec.verified) {
              fail("epoch_quote", index, `${v.check}: ${v.detail}`);
            }
          } catch (err) {
            if (rec.verified) fail("epoch_quote", index, asExecgateError(err).message);
          }
        } else if (rec.verified && requireTpm) {
          fail("epoch_quote", index, "marked verified without a quote that can be checked");
        }
        let hsmOk = true;
        const signed = e.body.hsmSignature !== undefined;
        if (input.hsmPublic && (requireHsmEpochs || signed)) {
          const h = verifyHsmEpoch(
            { quote: e.body.quote, ...(e.body.hsmSignature ? { hsmSignature: e.body.hsmSignature } : {}) },
            input.hsmPublic,
          );
          hsmOk = h.ok;
          // A signature that is there must verify, whatever the epoch's verdict.
          if (!h.ok && (rec.verified || signed)) fail("epoch_hsm", index, `${h.check}: ${h.detail}`);
        }
        const policyDigest = e.body.policyDigest;
        if (policyDigest && !policies.has(toHex(policyDigest)))
          fail("epoch_policy", index, "judged under a policy this run never loaded");
        const info = {
          index,
          hash,
          issuer: rec.binding.issuer,
          verified: rec.verified && (quoteOk || !requireTpm) && hsmOk,
          policyDigest,
        };
        if (info.verified) verifiedEpochs++;
        epochsByHash.set(toHex(hash), info);
        epochsByIndex.set(index, info);
        break;
      }
      case "decision":
        kinds.set(index, e.body.allow ? KIND.allow : KIND.denial);
        if (e.body.allow) recent.other(index);
        else
          recent.denial(
            index,
            e.body.reason,
            e.body.code,
            e.refs.find((r) => r.index < index && kinds.get(r.index) === KIND.request)?.index,
          );
        if (
          e.body.code !== undefined &&
          (e.body.allow || !e.body.reason || !codeFitsReason(e.body.reason, e.body.code))
        )
          fail("decision_code", index, `code ${e.body.code} is not one of the denial's reason`);
        if (e.body.allow) {
          allows++;
          const ep = e.refs.map((r) => epochsByIndex.get(r.index)).find((x) => x !== undefined);
          if (!ep) fail("decision_epoch", index, "allow does not name an epoch entry");
          else if (!ep.verified)
            fail("decision_epoch", index, `allow decided on epoch entry ${ep.index}, which is not verified`);
        }
        break;
      case "token_issued":
        issued.set(key(e.body.digest), index);
        break;
      case "denial_repeats": {
        const problem = repeatsProblem(e.body, e.refs, index, recent, namedByRepeats);
        if (problem) fail("denial_repeats", index, problem);
        break;
      }
      case "token_redeemed": {
        tokensRedeemed++;
        const token = e.body.token;
        let claims: TokenClaims;
        let msg: CoseSign1;
        try {
          msg = decodeToken(token);
          claims = claimsFromCbor(decode(msg.payload));
        } catch (err) {
          fail("token", index, `redeemed token does not decode: ${asExecgateError(err).message}`);
          return;
        }
        const ep = epochsByHash.get(toHex(claims.epoch));
        if (!ep) fail("token_epoch", index, "token names an epoch not in the log");
        else if (!tokenSignatureOk(msg, ep.issuer, input.hsmPublic)) {
          fail("token_signature", index, "signed neither by its epoch's issuer key nor by the HSM root key");
        } else if (ep.policyDigest && !bytesEqual(ep.policyDigest, claims.policyDigest)) {
          fail("token_policy", index, "names another policy than the one that judged its epoch");
        }
        if (input.ueid && !bytesEqual(claims.ueid, input.ueid))
          fail("token_ueid", index, "names another host (ueid) than the bundle's enrollment");
        const issuedAt = issued.get(key(sha256(token)));
        if (issuedAt === undefined || issuedAt > index)
          fail("token_issued", index, "no earlier token_issued entry with its digest");
        const [decisionIndex, decisionLeaf] = claims.lineage;
        const id = toHex(claims.cti);
        const first = redeemedDecisions.get(decisionIndex);
        if (first !== undefined)
          fail(
            "token_replayed",
            index,
            `the token of allow ${decisionIndex} was redeemed at ${first} already`,
          );
        else if (runIds.has(key(claims.cti)))
          fail("token_replayed", index, `token id ${id} redeemed twice in one run`);
        if (first === undefined) redeemedDecisions.set(decisionIndex, index);
        runIds.add(key(claims.cti));
        if (
          decisionIndex >= index ||
          kinds.get(decisionIndex) !== KIND.allow ||
          !e.refs.some((r) => r.index === decisionIndex && bytesEqual(r.leafHash, decisionLeaf))
        ) {
          fail("token_decision", index, "does not name the allow decision it was issued under");
        }
        break;
      }
      default:
        break;
    }
  };
  return {
    push,
    finish: () => ({ epochs: epochsByIndex.size, verifiedEpochs, allows, tokensRedeemed, failures }),
  };
}

/**
 * What is wrong with a denial_repeats entry, if anything: counts and times are safe integers, the
 * count positive, first ≤ last within one window; the decision it names (at most one) is a
 * denial of the same reason and code, named by no other such entry, and of the same caller where
 * that denial names its request.
 */
function repeatsProblem(
  b: DenialRepeatsBody,
  refs: Entry["refs"],
  index: number,
  recent: RecentCallers,
  named: Set<number>,
): string | undefined {
  // The decoder gives bigints above 2^53: no honest count or time is that large.
  const nums = [b.count, b.firstMs, b.lastMs, b.windowMs, b.uid ?? 0];
  if (!nums.every((n) => typeof n === "number")) return "a count or time beyond 2^53";
  if (b.count < 1) return "counts no denial";
  if (b.windowMs < 1) return "a window of 0 ms";
  if (b.lastMs < b.firstMs || b.lastMs - b.firstMs >= b.windowMs)
    return `first ${b.firstMs} and last ${b.lastMs} are not within one window of ${b.windowMs} ms`;
  if (!codeFitsReason(b.reason, b.code)) return `code ${b.code} is not one of reason ${b.reason}`;
  if (refs.length > 1) return "names more than the denial that opened its window";
  const ref = refs[0];
  if (!ref) return undefined;
  const d = recent.denialAt(ref.index, index);
  // Fail closed on what the window no longer holds: a window's first denial is named when it closes.
  if (d === "far") return `the denial at ${ref.index} is too far before it to check`;
  if (d === undefined || d.reason !== b.reason || d.code !== b.code)
    return `entry ${ref.index} is not a denial of reason ${b.reason}${b.code ? ` (${b.code})` : ""}`;
  if (named.has(ref.index)) return `the denial at ${ref.index} opened another window already`;
  named.add(ref.index);
  if (d.requestUid === "far")
    return `the request of the denial at ${ref.index} is too far before it to check`;
  if (d.requestUid !== undefined && d.requestUid !== b.uid)
    return `counts uid ${b.uid ?? "(unidentified)"}, its first denial was of uid ${d.requestUid}`;
  return undefined;
}
