import { constants as osConstants } from "node:os";
import type { Logger } from "pino";
import type { EvidenceState } from "../attest/evidence.js";
import type { AttestationLoop } from "../attest/loop.js";
import type { CborValue } from "../cbor/index.js";
import { withDeadline } from "../core/deadline.js";
import type { DenialCode, DenialReason } from "../core/denial.js";
import { digest } from "../core/digest.js";
import { asExecgateError, ExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";
import type { DiskSpace } from "../lineage/disk-space.js";
import { type BackRef, type Entry, type EntryTime, encodeEntry, makeEntry } from "../lineage/entry.js";
import { leafHash } from "../lineage/hash.js";
import type { Lineage } from "../lineage/lineage.js";
import type { PeerIdentity } from "../peer/index.js";
import { decide, evidenceStaleness, WAITING_FOR_FRESH_EPOCH } from "../policy/decide.js";
import type { LoadedPolicy } from "../policy/load.js";
import { epochKeepsWatchdog } from "../server/activation.js";
import type { ExecutionReportArgs, TokenRequestArgs } from "../server/protocol.js";
import { type TokenClaims, tokenIdFor } from "../token/claims.js";
import { signTokenWith, type TokenSigner, verifyTokenWith } from "../token/signer.js";
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
  /** What signs tokens: the in-memory issuer key (memoryTokenSigner) or the HSM key (hsmTokenSigner). */
  readonly tokenSigner: TokenSigner;
  readonly audience: string;
  readonly issuer: string;
  readonly skewS: number;
  readonly maxEvidenceAgeMs: number;
  /** How long a fresh-quote request waits for its epoch before it is denied (attestation_stale). */
  readonly freshWaitMs: number;
  /** How long a token's signature may take before the request is denied (default SIGNATURE_TIMEOUT_MS). */
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
 * How long a token's signature may take before the request is denied: its lineage slot holds
 * back every later entry until it is in, and a signer that never answers would leave the
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

/** A request the policy allowed, to be issued a token. */
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

    if (!decision.allow) {
      const reason = decision.reason;
      this.countDenial(reason);
      // A request already durable (it waited for an epoch) gets its decision; others may be counted.
      const verdict = requestRef ? RECORD_IN_FULL : this.denials.note({ uid: peer.uid, reason });
      if (!verdict.record) return { ok: false, reason };
      this.o.log.info({ reason, detail: decision.detail, uid: peer.uid, scope: args.scope }, "denied");
      const appended = this.o.lineage.add((first) => {
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
    return this.issue({ peer, request, requestRef, evidence, claimsFor });
  }

  /**
   * The one issuance path, whatever signs (docs/lineage.md): request, allow and token_issued in
   * one add — the token names the allow's index and leaf hash, so the token_issued slot is held
   * until the signature is back — and the token released only when all of them are durable. A
   * signature that fails or does not come within the timeout fills that slot with a denial
   * naming the allow (the signer's failure reason). A signer that cannot sign at all is known
   * before deciding: the request's decision is then that denial, in place of the allow.
   */
  private async issue(a: Allowed): Promise<GateResult<IssuedReply>> {
    const signer = this.o.tokenSigner;
    if (signer.unusable !== undefined)
      return this.notIssued(a, new ExecgateError("internal", signer.unusable));
    let claims: TokenClaims | undefined;
    let token: Uint8Array | undefined;
    let failure: DenialReason | undefined;
    try {
      await this.o.lineage.add((first) => {
        // Each entry is encoded once: its leaf hash goes into the next entry's reference and the
        // same bytes go to the journal.
        const req = requestPart(a.request, a.requestRef, first);
        const head = req.bytes ? [req.bytes] : [];
        const decisionBytes = encodeEntry(this.allowEntry(a, req.ref));
        const decisionRef = { index: first + head.length, leafHash: leafHash(decisionBytes) };
        const signed = (t: Uint8Array): Uint8Array => {
          token = t;
          return encodeEntry(this.issuedEntry(t, decisionRef));
        };
        const withdrawn = (e: unknown): Uint8Array => {
          failure = signer.failure ?? "hardware_unavailable";
          this.o.log.error({ uid: a.peer.uid, err: asExecgateError(e).message }, "token_not_issued");
          return encodeEntry(this.denialEntry(failure, decisionRef, undefined));
        };
        let last: Uint8Array | Promise<Uint8Array>;
        try {
          claims = a.claimsFor(decisionRef.index, decisionRef.leafHash);
          const t = signTokenWith(claims, signer, this.requestsInFlight);
          last = t instanceof Uint8Array ? signed(t) : this.bounded(t, signer).then(signed, withdrawn);
        } catch (e) {
          last = withdrawn(e);
        }
        return [...head, decisionBytes, last];
      });
    } catch (e) {
      return this.lineageDown(a.peer, e);
    }
    if (failure !== undefined) {
      this.countDenial(failure);
      return { ok: false, reason: failure };
    }
    return this.released(a, claims!, token!);
  }

  /** A signature that has not come back within the timeout fails: its slot holds back every later entry. */
  private bounded(signature: Promise<Uint8Array>, signer: TokenSigner): Promise<Uint8Array> {
    const ms = this.o.signatureTimeoutMs ?? SIGNATURE_TIMEOUT_MS;
    return withDeadline(
      () => signature,
      ms,
      () =>
        new ExecgateError(
          signer.failure === "internal_error" ? "internal" : "hardware_unavailable",
          `no token signature within ${ms} ms`,
        ),
    );
  }

  /** No token can be made: the request is recorded with a denial (internal_error) in place of the allow. */
  private async notIssued(a: Allowed, e: unknown): Promise<GateResult<IssuedReply>> {
    this.o.log.error({ uid: a.peer.uid, err: asExecgateError(e).message }, "token_not_issued");
    try {
      await this.o.lineage.add((first) => {
        const req = requestPart(a.request, a.requestRef, first);
        const denial = this.denialEntry("internal_error", req.ref, a.evidence);
        return req.bytes ? [req.bytes, denial] : [denial];
      });
    } catch (err) {
      return this.lineageDown(a.peer, err);
    }
    this.countDenial("internal_error");
    return { ok: false, reason: "internal_error" };
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
    const ev = this.o.loop.current();
    const cp = this.o.lineage.latestCheckpoint();
    const size = this.o.lineage.size;
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
