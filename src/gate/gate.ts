import type { KeyObject } from "node:crypto";
import { constants as osConstants } from "node:os";
import type { Logger } from "pino";
import { type EvidenceState, epochKeepsWatchdog } from "../attest/evidence.js";
import type { AttestationLoop } from "../attest/loop.js";
import type { CborValue } from "../cbor/index.js";
import { withDeadline } from "../core/deadline.js";
import type { DenialCode, DenialReason } from "../core/denial.js";
import { digest } from "../core/digest.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";
import { signTokenWith, type TokenSigner, verifyTokenWith } from "../hsm/token.js";
import type { DiskSpace } from "../lineage/disk-space.js";
import { type BackRef, type Entry, type EntryTime, encodeEntry, makeEntry } from "../lineage/entry.js";
import { leafHash } from "../lineage/hash.js";
import type { Lineage } from "../lineage/lineage.js";
import type { PeerIdentity } from "../peer/index.js";
import { decide, evidenceStaleness, WAITING_FOR_FRESH_EPOCH } from "../policy/decide.js";
import type { LoadedPolicy } from "../policy/load.js";
import { type TokenClaims, tokenIdFor } from "../token/claims.js";
import { COSE_ALG } from "../token/cose.js";
import type { SigningThread } from "../token/sign-thread.js";
import { issueToken, verifyToken } from "../token/token.js";
import type { ExecutionReportArgs, TokenRequestArgs } from "../wire/request.js";
import { DenialRecorder, RECORD_IN_FULL } from "./denial-recorder.js";
import { IssuedTokens } from "./issued.js";

/*
 * The gate: every request becomes lineage entries before any answer, and every path that is not
 * a proven allow ends in a denial with a reason, recorded too.
 *
 *   token.request:  [request, decision, token_issued] appended together (one group commit, the
 *                   decision and token_issued linked back by index and leaf hash); the token is
 *                   released only after all three are durable. A fresh-quote scope appends the
 *                   request first, waits for an epoch that started after it, then decides.
 *   token.redeem:   verify → single use (marked spent before the append, so a concurrent replay
 *                   loses) → token_redeemed durable → answer.
 *   execution.report: only for a token this run redeemed, by the same uid → execution_report.
 *   denials:        a caller's repeats of one reason within denial_window_ms are counted, not
 *                   recorded one by one (denial-windows.ts), unless they name an allow or a
 *                   request already durable; the reply is the same denial either way.
 */

export interface GateOptions {
  readonly lineage: Lineage;
  readonly loop: AttestationLoop;
  /** The policy in force and its digest (replaced on reload). */
  readonly policy: () => LoadedPolicy;
  /** The policy's digest, age and last reload for `status` (default: the digest alone). */
  readonly policyStatus?: () => Record<string, CborValue>;
  readonly issuerPrivateKey: KeyObject;
  readonly issuerPublicKey: KeyObject;
  /** Tokens signed by this (the HSM key, hsm.issuer = "hsm") instead of the in-memory issuer key. */
  readonly tokenSigner?: TokenSigner;
  /**
   * The in-memory issuer key's signatures made on this worker thread (the daemon's default); without
   * it they are made on the event loop (tests, tools).
   */
  readonly signingThread?: SigningThread;
  readonly audience: string;
  readonly issuer: string;
  readonly skewS: number;
  readonly maxEvidenceAgeMs: number;
  /** How long a fresh-quote request waits for its epoch before it is denied (attestation_stale). */
  readonly freshWaitMs: number;
  /**
   * How long a token's signature (worker thread or HSM) may take before the request is denied
   * (default SIGNATURE_TIMEOUT_MS).
   */
  readonly signatureTimeoutMs?: number;
  /** Free space of the lineage's filesystem, for status (absent: not reported). */
  readonly diskSpace?: () => DiskSpace | undefined;
  /**
   * Repeats of one caller's denial for one reason within this many ms are counted into one
   * denial_repeats entry (limits.denial_window_ms); absent: every denial is recorded in full.
   */
  readonly denialWindowMs?: number;
  /**
   * The kernel's boot id the daemon started under. The TPM's reset/restart counts have no fixed
   * expected value (a TPM reset is survived, docs/fail-closed.md): a token is tied to the counts
   * of the epoch it was issued on, checked at redeem.
   */
  readonly bootId: string;
  /** EAT ueid: 0x01 ‖ SHA-256(EK public), identifying this host's TPM. */
  readonly ueid: Uint8Array;
  readonly now: () => number;
  readonly monoUs: () => number;
  readonly log: Logger;
}

export type GateResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: DenialReason };

export interface IssuedReply {
  readonly token: Uint8Array;
  readonly tokenId: Uint8Array;
  readonly expires: number;
}

/** signal(7) names by number, the first name where a number has two (SIGABRT, not SIGIOT). */
const SIGNAL_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(osConstants.signals))
  if (!SIGNAL_NAMES.has(num)) SIGNAL_NAMES.set(num, name);

/** signal(7) name of signal n ("SIGKILL"); its number in decimal where there is none (real-time signals). */
function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? String(n);
}

/** The executable digest of a connection's peer as bytes, decoded once per connection. */
const exeDigests = new WeakMap<PeerIdentity, Uint8Array>();
function exeDigestOf(peer: PeerIdentity): Uint8Array {
  let d = exeDigests.get(peer);
  if (d === undefined) {
    d = new Uint8Array(Buffer.from(peer.exeSha256, "hex"));
    exeDigests.set(peer, d);
  }
  return d;
}

/**
 * Token requests in flight above which the in-memory key signs on the worker thread. Measured on
 * the 2-core VM: 1 and 8 closed-loop clients were faster signing on the event loop (921 vs 448,
 * 3.2k vs 2.4k tokens/s), 8 clients × 32 pipelined faster on the worker (8.6k vs 6.6k).
 */
const THREAD_SIGNING_ABOVE = 16;
/**
 * How long a token's signature may take before the request is denied: reserved lineage slots
 * hold back every later entry until it is in, and an HSM that never answers would leave the
 * request without a reply.
 */
const SIGNATURE_TIMEOUT_MS = 5_000;

/**
 * The request entry's bytes, to append first at index `first` (unless it is durable already), and
 * the reference the decision names. Encoded once: the same bytes are hashed and written.
 */
function requestPart(
  request: Entry,
  requestRef: BackRef | undefined,
  first: number,
): { readonly bytes?: Uint8Array; readonly ref: BackRef } {
  if (requestRef) return { ref: requestRef };
  const bytes = encodeEntry(request);
  return { bytes, ref: { index: first, leafHash: leafHash(bytes) } };
}

/** What the ways of issuing a token share once the policy allowed it. */
interface Allowed {
  readonly peer: PeerIdentity;
  readonly request: Entry;
  /** The request entry's reference when it is durable already (it waited for a fresh epoch). */
  readonly requestRef: BackRef | undefined;
  readonly evidence: EvidenceState;
  readonly claimsFor: (decisionIndex: number, decisionLeaf: Uint8Array) => TokenClaims;
}

export class Gate {
  private readonly issued = new IssuedTokens();
  private requestsInFlight = 0;
  private counter = 0n;
  readonly counters = {
    requests: 0,
    allowed: 0,
    redeemed: 0,
    reports: 0,
    denials: new Map<DenialReason, number>(),
    lastDenials: [] as { reason: DenialReason; atMs: number }[],
  };

  /** What decide() expects of the evidence: the boot id the daemon started under. */
  private readonly expected: { readonly bootId: string };
  /** Repeats of a caller's denial, counted instead of recorded one by one. */
  private readonly denials: DenialRecorder;

  constructor(private readonly o: GateOptions) {
    this.expected = { bootId: o.bootId };
    this.denials = new DenialRecorder({
      journal: o.lineage.journal,
      windowMs: o.denialWindowMs,
      now: o.now,
      monoUs: o.monoUs,
      log: o.log,
    });
  }

  private time(): EntryTime {
    return { wallMs: this.o.now(), monoUs: this.o.monoUs() };
  }

  private countDenial(reason: DenialReason): void {
    this.counters.denials.set(reason, (this.counters.denials.get(reason) ?? 0) + 1);
    this.counters.lastDenials.push({ reason, atMs: this.o.now() });
    if (this.counters.lastDenials.length > 20) this.counters.lastDenials.shift();
  }

  private peerBody(peer: PeerIdentity) {
    return { uid: peer.uid, gid: peer.gid, pid: peer.pid, exeDigest: exeDigestOf(peer) };
  }

  /**
   * Records a denial that has no request entry of its own (malformed frame, rate limit, peer
   * not identifiable, redeem/report refusals), or counts it in its caller's open window when it
   * names nothing (`refs`: a denial naming an allow is always recorded). Fails quietly to the
   * operator log when even the lineage cannot take it: the reply is a denial either way.
   */
  async recordDenial(
    peer: PeerIdentity | undefined,
    reason: DenialReason,
    detail: string,
    refs: readonly BackRef[] = [],
    code?: DenialCode,
  ): Promise<void> {
    this.countDenial(reason);
    const verdict = refs.length > 0 ? RECORD_IN_FULL : this.denials.note({ uid: peer?.uid, reason, code });
    if (!verdict.record) return;
    this.o.log.info({ reason, code, detail, uid: peer?.uid, pid: peer?.pid }, "denied");
    const appended = this.o.lineage.journal.append(
      makeEntry("decision", this.time(), { allow: false, reason, ...(code ? { code } : {}) }, refs),
    );
    if (verdict.window) verdict.window.first = appended.then(refOf, () => undefined);
    try {
      await appended;
    } catch (e) {
      this.o.log.error({ reason, err: asExecgateError(e).message }, "denial_not_recorded");
    }
  }

  /** At stop, before daemon_stop: the counts of open denial windows are recorded (DenialRecorder.flush). */
  flushDenials(): Promise<void> {
    return this.denials.flush();
  }

  async requestToken(peer: PeerIdentity, args: TokenRequestArgs): Promise<GateResult<IssuedReply>> {
    this.requestsInFlight++;
    try {
      return await this.requestTokenNow(peer, args);
    } finally {
      this.requestsInFlight--;
    }
  }

  private async requestTokenNow(
    peer: PeerIdentity,
    args: TokenRequestArgs,
  ): Promise<GateResult<IssuedReply>> {
    this.counters.requests++;
    this.o.loop.touch();
    const requestedMonoUs = this.o.monoUs();
    let inForce = this.o.policy();
    // This request's number in this run (the request entry's requestId), taken before any await.
    this.counter += 1n;
    const requestSeq = this.counter;
    const request = makeEntry("request", this.time(), {
      requestId: String(requestSeq),
      scope: args.scope,
      actionDigest: args.action,
      peer: this.peerBody(peer),
    });
    const decideNow = (evidence: EvidenceState | undefined) =>
      decide({
        policy: inForce.policy,
        evidence,
        policyDigest: inForce.digest,
        peer,
        request: {
          scope: args.scope,
          action: args.action,
          ...(args.audience ? { audience: args.audience } : {}),
        },
        nowMonoUs: this.o.monoUs(),
        requestLoggedMonoUs: requestedMonoUs,
        maxEvidenceAgeMs: this.o.maxEvidenceAgeMs,
        expected: this.expected,
        defaultAudience: this.o.audience,
      });

    // The evidence a decision was made on is the evidence the token names.
    let evidence = this.o.loop.current();
    let decision = decideNow(evidence);
    let requestRef: BackRef | undefined;
    if (
      !decision.allow &&
      (decision.detail === WAITING_FOR_FRESH_EPOCH || decision.reason === "attestation_stale")
    ) {
      // A fresh-quote scope, evidence that aged while the loop idled, or evidence judged under
      // the policy before a reload (JUDGED_UNDER_OTHER_POLICY is attestation_stale): the request is
      // recorded first, then waits (bounded) for an epoch that started after it; concurrent
      // waiters share that epoch's one quote. If none comes in time the denial stands.
      try {
        const r = await this.o.lineage.journal.append(request);
        requestRef = { index: r.index, leafHash: r.leafHash };
      } catch (e) {
        return this.lineageDown(peer, e);
      }
      const fresh = await this.o.loop.waitForEpochAfter(requestedMonoUs, this.o.freshWaitMs);
      evidence = fresh ?? this.o.loop.current();
      // A reload during the wait is in force now (its policy_loaded is durable): the decision,
      // and the token's policy digest, are under it, not the policy read before the wait.
      inForce = this.o.policy();
      decision = decideNow(evidence);
    }

    if (!decision.allow) {
      const reason = decision.reason;
      this.countDenial(reason);
      // A request already durable (it waited for an epoch) gets its decision; others may be counted.
      const verdict = requestRef ? RECORD_IN_FULL : this.denials.note({ uid: peer.uid, reason });
      if (!verdict.record) return { ok: false, reason };
      this.o.log.info({ reason, detail: decision.detail, uid: peer.uid, scope: args.scope }, "denied");
      const appended = this.o.lineage.journal.appendLinked((first) => {
        const req = requestPart(request, requestRef, first);
        const denial = this.denialEntry(reason, req.ref, evidence);
        return req.bytes ? [req.bytes, denial] : [denial];
      });
      if (verdict.window)
        verdict.window.first = appended.then(
          (rs) => refOf(rs[rs.length - 1]!),
          () => undefined,
        );
      try {
        await appended;
      } catch (e) {
        this.o.log.error({ reason, err: asExecgateError(e).message }, "denial_not_recorded");
      }
      return { ok: false, reason };
    }

    if (!evidence) return { ok: false, reason: "attestation_missing" }; // decide() already refuses this
    const grant = decision.grant;
    const policyDigest = inForce.digest;
    const nowS = Math.floor(this.o.now() / 1000);
    const claimsFor = (decisionIndex: number, decisionLeaf: Uint8Array): TokenClaims => ({
      iss: this.o.issuer,
      sub: `uid:${peer.uid}`,
      aud: grant.audience,
      exp: nowS + grant.ttlS,
      nbf: nowS,
      iat: nowS,
      cti: tokenIdFor(decisionIndex, decisionLeaf),
      ...(args.nonce ? { nonce: args.nonce } : {}),
      ueid: this.o.ueid,
      scope: grant.scope,
      action: args.action,
      peer: {
        uid: peer.uid,
        gid: peer.gid,
        pid: peer.pid,
        exe: exeDigestOf(peer),
        ...(peer.unit ? { unit: peer.unit } : {}),
      },
      epoch: evidence.epochHash,
      pcrDigest: evidence.pcrDigest,
      policyDigest,
      bootId: evidence.bootId,
      lineage: [decisionIndex, decisionLeaf],
    });
    const allowed: Allowed = { peer, request, requestRef, evidence, claimsFor };
    if (this.o.tokenSigner) return this.issueSigned(this.o.tokenSigner, allowed);
    // The worker thread pays off only when requests queue up: its round trip (two thread wake-ups)
    // costs more than the signature while few requests wait, and its tokens span more batches.
    if (this.o.signingThread && this.requestsInFlight > THREAD_SIGNING_ABOVE)
      return this.issueThreaded(this.o.signingThread, allowed);
    return this.issueInline(allowed);
  }

  /**
   * In-memory issuer key, signing on the event loop, in one group commit: request, allow and
   * token_issued. A token that cannot be made (signing or encoding fails) is not a lineage
   * failure: the request is recorded with a deny (internal_error) in place of the allow.
   */
  private async issueInline(a: Allowed): Promise<GateResult<IssuedReply>> {
    let token: Uint8Array | undefined;
    let claims: TokenClaims | undefined;
    let failure: { readonly error: unknown } | undefined;
    try {
      await this.o.lineage.journal.appendLinked((first) => {
        // Each entry is encoded once: its leaf hash goes into the next entry's reference and the
        // same bytes go to the journal.
        const req = requestPart(a.request, a.requestRef, first);
        const head = req.bytes ? [req.bytes] : [];
        try {
          const decisionBytes = encodeEntry(this.allowEntry(a, req.ref));
          const decisionRef = { index: first + head.length, leafHash: leafHash(decisionBytes) };
          claims = a.claimsFor(decisionRef.index, decisionRef.leafHash);
          token = issueToken(claims, this.o.issuerPrivateKey);
          return [...head, decisionBytes, this.issuedEntry(token, decisionRef)];
        } catch (error) {
          failure = { error };
          return [...head, this.denialEntry("internal_error", req.ref, a.evidence)];
        }
      });
    } catch (e) {
      return this.lineageDown(a.peer, e);
    }
    if (failure) {
      this.countDenial("internal_error");
      this.o.log.error({ uid: a.peer.uid, err: asExecgateError(failure.error).message }, "token_not_issued");
      return { ok: false, reason: "internal_error" };
    }
    return this.released(a, claims!, token!);
  }

  /** A request's denial names the request and the epoch entry it was decided on, if any. */
  private denialEntry(reason: DenialReason, requestRef: BackRef, evidence: EvidenceState | undefined): Entry {
    return makeEntry("decision", this.time(), { allow: false, reason }, [requestRef, ...epochRef(evidence)]);
  }

  /** The allow names the request and the epoch entry it was decided on (the auditor checks it). */
  private allowEntry(a: Allowed, requestRef: BackRef): Entry {
    return makeEntry("decision", this.time(), { allow: true }, [requestRef, ...epochRef(a.evidence)]);
  }

  private issuedEntry(token: Uint8Array, decisionRef: BackRef): Entry {
    return makeEntry("token_issued", this.time(), { digest: digest("sha256", token) }, [decisionRef]);
  }

  /** A token whose entries are durable: its epoch remembered for the redeem, counted, handed out. */
  private released(a: Allowed, claims: TokenClaims, token: Uint8Array): GateResult<IssuedReply> {
    const { evidence } = a;
    this.issued.issued(evidence.epochHash, evidence, claims.exp);
    this.counters.allowed++;
    // Redeemed tokens are remembered past any expiry verifyToken still accepts (skew).
    this.issued.sweep(claims.iat, Math.max(60, this.o.skewS + 1));
    return { ok: true, value: { token, tokenId: claims.cti, expires: claims.exp } };
  }

  /**
   * In-memory issuer key, signing on the worker thread, in one group commit: the request, decision
   * and token_issued slots are reserved together (the token names the decision's index and leaf
   * hash), request and decision are filled at once, token_issued when the signature is back, and
   * the token is released only when all of them are durable. Every slot is filled on every path:
   * if no token can be made, the last slot records a denial naming the allow (internal_error).
   */
  private async issueThreaded(thread: SigningThread, a: Allowed): Promise<GateResult<IssuedReply>> {
    const { peer, requestRef } = a;
    const journal = this.o.lineage.journal;
    if (journal.failure) return this.lineageDown(peer, journal.failure);
    const slots = journal.reserve(requestRef ? 2 : 3);
    const last = requestRef ? 1 : 2;
    const first = slots.first;
    const decisionIndex = requestRef ? first : first + 1;
    let decisionRef: BackRef | undefined;
    let claims: TokenClaims | undefined;
    let token: Uint8Array | undefined;
    let filled = 0;
    try {
      const req = requestPart(a.request, a.requestRef, first);
      if (req.bytes) {
        slots.fill(filled, req.bytes);
        filled++;
      }
      const decisionBytes = encodeEntry(this.allowEntry(a, req.ref));
      decisionRef = { index: decisionIndex, leafHash: leafHash(decisionBytes) };
      slots.fill(filled, decisionBytes);
      filled++;
      claims = a.claimsFor(decisionIndex, decisionRef.leafHash);
      // Bounded: the slots hold back every later lineage entry until the signature is in.
      const signed = claims;
      token = await withDeadline(
        () =>
          signTokenWith(signed, {
            alg: COSE_ALG.EdDSA,
            publicKey: this.o.issuerPublicKey,
            sign: (tbs) => thread.sign(tbs),
          }),
        this.signatureTimeoutMs,
        () => new ExecgateError("internal", "the signing thread did not answer"),
      );
      slots.fill(filled, encodeEntry(this.issuedEntry(token, decisionRef)));
      filled++;
    } catch (e) {
      // No token: fill what is left with denials (the journal must not stall on an empty slot).
      this.o.log.error({ uid: peer.uid, err: asExecgateError(e).message }, "token_not_issued");
      for (; filled <= last; filled++) {
        const refs = decisionRef ? [decisionRef] : [];
        slots.fill(
          filled,
          encodeEntry(makeEntry("decision", this.time(), { allow: false, reason: "internal_error" }, refs)),
        );
      }
      this.countDenial("internal_error");
      await slots.done.catch(() => undefined);
      return { ok: false, reason: "internal_error" };
    }
    try {
      await slots.done;
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    return this.released(a, claims, token);
  }

  /**
   * Tokens signed by the HSM key (hsm.issuer = "hsm"). The signature is asynchronous and the
   * token names its decision's lineage index, so this takes two group commits: request and
   * allow decision durable first, then the HSM signature, then token_issued durable; only then
   * is the token released. An HSM that fails in between, or does not answer within the
   * signature timeout, leaves an allow without a token, then a hardware_unavailable denial
   * naming it.
   */
  private async issueSigned(signer: TokenSigner, a: Allowed): Promise<GateResult<IssuedReply>> {
    const { peer } = a;
    let decisionRef: BackRef;
    try {
      const results = await this.o.lineage.journal.appendLinked((first) => {
        const req = requestPart(a.request, a.requestRef, first);
        const decisionEntry = this.allowEntry(a, req.ref);
        return req.bytes ? [req.bytes, decisionEntry] : [decisionEntry];
      });
      const d = results[results.length - 1]!;
      decisionRef = { index: d.index, leafHash: d.leafHash };
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    const claims = a.claimsFor(decisionRef.index, decisionRef.leafHash);
    let token: Uint8Array;
    try {
      token = await withDeadline(
        () => signTokenWith(claims, signer),
        this.signatureTimeoutMs,
        () => new ExecgateError("hardware_unavailable", `no signature within ${this.signatureTimeoutMs} ms`),
      );
    } catch (e) {
      await this.recordDenial(
        peer,
        "hardware_unavailable",
        `HSM token signature: ${asExecgateError(e).message}`,
        [decisionRef],
      );
      return { ok: false, reason: "hardware_unavailable" };
    }
    try {
      await this.o.lineage.journal.append(this.issuedEntry(token, decisionRef));
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    return this.released(a, claims, token);
  }

  private get signatureTimeoutMs(): number {
    return this.o.signatureTimeoutMs ?? SIGNATURE_TIMEOUT_MS;
  }

  /** Stops the signing thread (at daemon stop, after the server closed). */
  async close(): Promise<void> {
    await this.o.signingThread?.close();
  }

  private async lineageDown(peer: PeerIdentity, e: unknown): Promise<GateResult<never>> {
    // Nothing can be recorded, so nothing may be allowed.
    this.countDenial("lineage_unavailable");
    this.o.log.error({ uid: peer.uid, err: asExecgateError(e).message }, "lineage_unavailable");
    return { ok: false, reason: "lineage_unavailable" };
  }

  async redeem(
    peer: PeerIdentity,
    token: Uint8Array,
  ): Promise<GateResult<{ tokenId: Uint8Array; scope: string; action: Uint8Array }>> {
    const nowMs = this.o.now();
    const verifyOpts = {
      issuerPublicKey: this.o.tokenSigner?.publicKey ?? this.o.issuerPublicKey,
      audience: this.o.audience,
      now: Math.floor(nowMs / 1000),
      skew: this.o.skewS,
    };
    const v = this.o.tokenSigner
      ? verifyTokenWith(token, this.o.tokenSigner.alg, verifyOpts)
      : verifyToken(token, verifyOpts);
    if (!v.ok) {
      await this.recordDenial(peer, v.reason, v.detail);
      return { ok: false, reason: v.reason };
    }
    const c = v.claims;
    // Issued by this run: it names an epoch this run issued tokens on (the signature alone does
    // not say so for an HSM key that outlives the process).
    const issuedOn = this.issued.epoch(c.epoch);
    const refs = [{ index: c.lineage[0], leafHash: c.lineage[1] }];
    const deny = async (reason: DenialReason, detail: string): Promise<GateResult<never>> => {
      await this.recordDenial(peer, reason, detail, issuedOn ? refs : []);
      return { ok: false, reason };
    };
    if (!issuedOn) return deny("token_signature_invalid", "token not issued by this daemon run");
    if (this.issued.forgotten(c.exp))
      return deny("token_expired", "expired longer ago than its single use is remembered");
    if (this.issued.get(c.cti)) return deny("token_replayed", "token already redeemed");
    if (c.peer.uid !== peer.uid)
      return deny("peer_unknown", `token issued to uid ${c.peer.uid}, redeemed by uid ${peer.uid}`);
    const ev = this.o.loop.current();
    if (!ev) return deny("attestation_missing", "no epoch");
    if (!ev.integrity.ok) return deny(ev.integrity.reason, ev.integrity.detail);
    if (
      ev.resetCount !== issuedOn.resetCount ||
      ev.restartCount !== issuedOn.restartCount ||
      ev.bootId !== this.o.bootId
    ) {
      return deny("environment_mismatch", "TPM reset/restart or boot changed since the token was issued");
    }
    const stale = evidenceStaleness(ev, this.o.monoUs(), this.o.maxEvidenceAgeMs);
    if (stale) return deny("attestation_stale", `at redeem: ${stale}`);
    // Spent before the await: a concurrent replay of the same token now loses.
    const t = this.issued.spend(c.cti, peer.uid, c.exp);
    if (!t) return deny("token_replayed", "token already redeemed");
    try {
      const r = await this.o.lineage.journal.append(
        makeEntry("token_redeemed", this.time(), { token }, refs),
      );
      t.redeemed = { index: r.index, leafHash: r.leafHash };
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    this.counters.redeemed++;
    return { ok: true, value: { tokenId: c.cti, scope: c.scope, action: c.action } };
  }

  async report(peer: PeerIdentity, args: ExecutionReportArgs): Promise<GateResult<Record<string, never>>> {
    const t = this.issued.get(args.tokenId);
    if (!t?.redeemed || t.uid !== peer.uid || t.reported) {
      const reason: DenialReason = t?.reported ? "token_replayed" : "no_token";
      await this.recordDenial(peer, reason, "report for a token not redeemed by this caller");
      return { ok: false, reason };
    }
    t.reported = true;
    try {
      await this.o.lineage.journal.append(
        makeEntry(
          "execution_report",
          this.time(),
          {
            token: args.tokenId,
            // exit_status −n: killed by signal n (docs/protocol.md), recorded by its name.
            ...(args.exitStatus >= 0
              ? { exitCode: args.exitStatus }
              : { signal: signalName(-args.exitStatus) }),
            durationMs: args.durationMs,
          },
          [t.redeemed],
        ),
      );
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    this.counters.reports++;
    return { ok: true, value: {} };
  }

  /** Status for `execgate status` (coarse: no secrets, no peer details). */
  status(): Record<string, CborValue> {
    const ev = this.o.loop.current();
    const cp = this.o.lineage.checkpointer.latest();
    const size = this.o.lineage.journal.size;
    const now = this.o.now();
    const stats = this.o.loop.stats;
    const disk = this.o.diskSpace?.();
    // Newest first: the reasons of the last denials, each with how often it occurred among them.
    const recent = [...this.counters.lastDenials].reverse();
    const recentCounts = new Map<string, number>();
    for (const d of recent) recentCounts.set(d.reason, (recentCounts.get(d.reason) ?? 0) + 1);
    const last = recent[0];
    return {
      up: true,
      // Age of the evidence tokens are issued on: null when the latest epoch is not verified.
      evidence_age_ms: ev?.integrity.ok
        ? Math.max(0, Math.floor((this.o.monoUs() - ev.startedMonoUs) / 1000))
        : null,
      epoch: ev
        ? {
            seq: ev.epochSeq,
            // From the epoch's start on the monotonic clock, as evidence_age_ms: a wall-clock
            // step does not change it.
            age_ms: Math.max(0, Math.floor((this.o.monoUs() - ev.startedMonoUs) / 1000)),
            verified: ev.integrity.ok,
            ...(ev.integrity.ok ? {} : { reason: ev.integrity.reason }),
            reset_count: ev.resetCount,
            restart_count: ev.restartCount,
          }
        : null,
      lineage: {
        size,
        checkpoint_size: cp?.checkpoint.size ?? 0,
        checkpoint_lag: size - (cp?.checkpoint.size ?? 0),
        ...(disk ? { fs_free_bytes: disk.freeBytes, fs_size_bytes: disk.sizeBytes } : {}),
      },
      tokens: {
        requests: this.counters.requests,
        issued: this.counters.allowed,
        redeemed: this.counters.redeemed,
        reports: this.counters.reports,
        live: this.issued.liveAt(Math.floor(now / 1000)),
      },
      // The policy in force and the last reload's outcome (a refused reload keeps the old policy).
      policy: this.o.policyStatus?.() ?? { digest: toHex(this.o.policy().digest) },
      denials: Object.fromEntries(this.counters.denials),
      last_denial: last ? { reason: last.reason, age_ms: Math.max(0, now - last.atMs) } : null,
      recent_denials: Object.fromEntries(recentCounts),
      // The roots of trust (TPM and/or HSM, hsm.require) answered the latest epoch: an epoch
      // that fails the policy still had healthy hardware; hardware_unavailable did not.
      hardware: {
        healthy: ev !== undefined && epochKeepsWatchdog(ev),
        epochs: stats.epochs,
        failed_epochs: stats.failed,
        last_epoch_ms: stats.lastDurationMs,
      },
    };
  }
}

function refOf(r: { readonly index: number; readonly leafHash: Uint8Array }): BackRef {
  return { index: r.index, leafHash: r.leafHash };
}

function epochRef(ev: EvidenceState | undefined): BackRef[] {
  return ev?.entry ? [{ index: ev.entry.index, leafHash: ev.entry.leafHash }] : [];
}
