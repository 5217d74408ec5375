import type { EvidenceState } from "../attest/evidence.js";
import type { CborValue } from "../cbor/index.js";
import type { DenialCode, DenialReason } from "../core/denial.js";
import { asExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";
import { type BackRef, type Entry, type EntryTime, makeEntry } from "../lineage/entry.js";
import type { PeerIdentity } from "../peer/index.js";
import { decide, evidenceStaleness, WAITING_FOR_FRESH_EPOCH } from "../policy/decide.js";
import type { TokenClaims } from "../token/claims.js";
import { verifyTokenWith } from "../token/signer.js";
import type { ExecutionReportArgs, TokenRequestArgs } from "../wire/request.js";
import { DenialRecorder, RECORD_IN_FULL } from "./denial-recorder.js";
import {
  type Allowed,
  type ClaimsInput,
  denialEntry,
  requestPart,
  SIGNATURE_TIMEOUT_MS,
  TokenIssuer,
  tokenClaims,
} from "./issue.js";
import { IssuedTokens } from "./issued.js";
import type { GateOptions, GateResult, IssuedReply } from "./options.js";
import { exeDigestOf, signalName } from "./peer-facts.js";
import { gateStatus } from "./status.js";

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

export type { GateOptions, GateResult, IssuedReply } from "./options.js";

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
  private readonly issuer: TokenIssuer;

  constructor(private readonly o: GateOptions) {
    this.expected = { bootId: o.bootId };
    this.issuer = new TokenIssuer({
      lineage: o.lineage,
      signer: o.tokenSigner,
      signatureTimeoutMs: o.signatureTimeoutMs ?? SIGNATURE_TIMEOUT_MS,
      time: () => this.time(),
      log: o.log,
    });
    this.denials = new DenialRecorder({
      lineage: o.lineage,
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
    const appended = this.o.lineage.add([
      makeEntry("decision", this.time(), { allow: false, reason, ...(code ? { code } : {}) }, refs),
    ]);
    if (verdict.window)
      verdict.window.first = appended.then(
        (rs) => refOf(rs[0]!),
        () => undefined,
      );
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
        const [r] = await this.o.lineage.add([request]);
        requestRef = refOf(r!);
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

    if (!decision.allow) return this.deniedRequest(peer, args, request, requestRef, evidence, decision);

    if (!evidence) return { ok: false, reason: "attestation_missing" }; // decide() already refuses this
    const claims: ClaimsInput = {
      issuer: this.o.issuer,
      ueid: this.o.ueid,
      nowS: Math.floor(this.o.now() / 1000),
      grant: decision.grant,
      args,
      peer,
      exe: exeDigestOf(peer),
      evidence,
      policyDigest: inForce.digest,
    };
    const claimsFor = (index: number, leaf: Uint8Array) => tokenClaims(claims, index, leaf);
    return this.issue({ peer, request, requestRef, evidence, claimsFor });
  }

  /** A request's denial: recorded with the request, or counted in its caller's open window. */
  private async deniedRequest(
    peer: PeerIdentity,
    args: TokenRequestArgs,
    request: Entry,
    requestRef: BackRef | undefined,
    evidence: EvidenceState | undefined,
    decision: { readonly reason: DenialReason; readonly detail: string },
  ): Promise<GateResult<never>> {
    const reason = decision.reason;
    this.countDenial(reason);
    // A request already durable (it waited for an epoch) gets its decision; others may be counted.
    const verdict = requestRef ? RECORD_IN_FULL : this.denials.note({ uid: peer.uid, reason });
    if (!verdict.record) return { ok: false, reason };
    this.o.log.info({ reason, detail: decision.detail, uid: peer.uid, scope: args.scope }, "denied");
    const appended = this.o.lineage.add((first) => {
      const req = requestPart(request, requestRef, first);
      const denial = denialEntry(this.time(), reason, req.ref, evidence);
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

  /** Issues through the one path (TokenIssuer) and counts the outcome. */
  private async issue(a: Allowed): Promise<GateResult<IssuedReply>> {
    const out = await this.issuer.issue(a, this.requestsInFlight);
    if (out.kind === "issued") return this.released(a, out.claims, out.token);
    if (out.kind === "lineage_down") return this.lineageDown(a.peer, out.error);
    this.countDenial(out.reason);
    return { ok: false, reason: out.reason };
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

  /** Stops the token signer (at daemon stop, after the server closed). */
  async close(): Promise<void> {
    await this.o.tokenSigner.close?.();
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
    const v = verifyTokenWith(token, this.o.tokenSigner.alg, {
      issuerPublicKey: this.o.tokenSigner.publicKey,
      audience: this.o.audience,
      now: Math.floor(nowMs / 1000),
      skew: this.o.skewS,
    });
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
      const [r] = await this.o.lineage.add([makeEntry("token_redeemed", this.time(), { token }, refs)]);
      t.redeemed = refOf(r!);
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
      await this.o.lineage.add([
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
      ]);
    } catch (e) {
      return this.lineageDown(peer, e);
    }
    this.counters.reports++;
    return { ok: true, value: {} };
  }

  /** Status for `execgate status` (coarse: no secrets, no peer details). */
  status(): Record<string, CborValue> {
    return gateStatus({
      evidence: this.o.loop.current(),
      loopStats: this.o.loop.stats,
      lineage: this.o.lineage,
      counters: this.counters,
      liveTokens: this.issued.liveAt(Math.floor(this.o.now() / 1000)),
      policy: this.o.policyStatus?.() ?? { digest: toHex(this.o.policy().digest) },
      disk: this.o.diskSpace?.(),
      now: this.o.now(),
      monoUs: this.o.monoUs(),
    });
  }
}

function refOf(r: { readonly index: number; readonly leafHash: Uint8Array }): BackRef {
  return { index: r.index, leafHash: r.leafHash };
}
