import { toHex } from "../core/hex.js";

/**
 * What this daemon run remembers of the tokens it issued, in memory only (the in-memory issuer key
 * dies with the process; an HSM-signed token names an epoch of the run that issued it). So nothing
 * is recovered at start: every earlier run's token, spent or not, is refused as not issued by this run.
 *
 * A token carries everything a redeem checks except two things, which are kept here:
 *   - the epochs tokens were issued on, with the TPM reset/restart counts then: a token naming an
 *     epoch this run does not know was not issued by it, and a reset since invalidates it;
 *   - the tokens redeemed (single use), with their token_redeemed entry for the execution report.
 * So memory grows with epochs (at most one a second) and with redeems, not with every token
 * issued; each is dropped `graceS` seconds after its last token expires. A count of the tokens
 * issued and not yet expired is kept per expiry second for `status`.
 */
export interface EpochCounts {
  readonly resetCount: number;
  readonly restartCount: number;
}

export interface RedeemedToken {
  readonly uid: number;
  readonly exp: number;
  /** The token_redeemed entry, once durable (an execution report refers to it). */
  redeemed?: { readonly index: number; readonly leafHash: Uint8Array };
  reported: boolean;
}

interface KnownEpoch extends EpochCounts {
  /** Latest expiry of a token issued on this epoch. */
  lastExp: number;
}

export class IssuedTokens {
  private readonly epochs = new Map<string, KnownEpoch>();
  private readonly redeemed = new Map<string, RedeemedToken>();
  /**
   * Redeemed token ids and live-token counts by expiry second: a sweep visits the expiry seconds
   * in use (at most the longest TTL plus the grace) and what it drops, never every token.
   */
  private readonly redeemedByExp = new Map<number, string[]>();
  private readonly liveByExp = new Map<number, number>();
  private liveCount = 0;
  private lastSweepS = 0;
  /** Tokens expiring at or before this second may have been forgotten: refuse them (monotonic). */
  private forgottenUpTo = Number.NEGATIVE_INFINITY;

  /** Tokens issued by this run and not yet expired past the grace. */
  get size(): number {
    return this.liveCount;
  }

  /** Tokens issued by this run that are still usable at `nowS`: not expired and not redeemed. */
  liveAt(nowS: number): number {
    let n = 0;
    for (const [exp, count] of this.liveByExp) if (exp > nowS) n += count;
    for (const [exp, ids] of this.redeemedByExp) if (exp > nowS) n -= ids.length;
    return Math.max(0, n);
  }

  /** Records a token issued on the epoch `epochHash` (the token's `epoch` claim), expiring at `exp`. */
  issued(epochHash: Uint8Array, counts: EpochCounts, exp: number): void {
    const key = toHex(epochHash);
    const e = this.epochs.get(key);
    if (e === undefined)
      this.epochs.set(key, {
        resetCount: counts.resetCount,
        restartCount: counts.restartCount,
        lastExp: exp,
      });
    else if (exp > e.lastExp) e.lastExp = exp;
    this.liveByExp.set(exp, (this.liveByExp.get(exp) ?? 0) + 1);
    this.liveCount += 1;
  }

  /** The epoch a token names, if this run issued tokens on it (and they have not all expired). */
  epoch(epochHash: Uint8Array): EpochCounts | undefined {
    return this.epochs.get(toHex(epochHash));
  }

  /**
   * True when a token expiring at `exp` may have been redeemed and swept since: its single use is
   * no longer remembered, so it must be refused (a clock skew allowance longer than the grace, or
   * a wall clock stepped back, could otherwise make it redeemable again).
   */
  forgotten(exp: number): boolean {
    return exp <= this.forgottenUpTo;
  }

  /** The redeemed token with this id, if it was redeemed in this run. */
  get(tokenId: Uint8Array): RedeemedToken | undefined {
    return this.redeemed.get(toHex(tokenId));
  }

  /**
   * Marks a token spent (call it before any await, so a concurrent replay loses): its record, or
   * undefined if it was spent already.
   */
  spend(tokenId: Uint8Array, uid: number, exp: number): RedeemedToken | undefined {
    const key = toHex(tokenId);
    if (this.redeemed.has(key)) return undefined;
    const t: RedeemedToken = { uid, exp, reported: false };
    this.redeemed.set(key, t);
    const ids = this.redeemedByExp.get(exp);
    if (ids) ids.push(key);
    else this.redeemedByExp.set(exp, [key]);
    return t;
  }

  /** Drops what expired more than `graceS` seconds ago (at most once a second). */
  sweep(nowS: number, graceS = 60): void {
    if (nowS === this.lastSweepS) return;
    this.lastSweepS = nowS;
    const gone = (exp: number) => exp + graceS < nowS;
    this.forgottenUpTo = Math.max(this.forgottenUpTo, nowS - graceS - 1);
    for (const [exp, ids] of this.redeemedByExp) {
      if (!gone(exp)) continue;
      for (const id of ids) this.redeemed.delete(id);
      this.redeemedByExp.delete(exp);
    }
    for (const [exp, n] of this.liveByExp) {
      if (!gone(exp)) continue;
      this.liveCount -= n;
      this.liveByExp.delete(exp);
    }
    for (const [key, e] of this.epochs) if (gone(e.lastExp)) this.epochs.delete(key);
  }
}
