/**
 * Tokens this daemon run has issued and redeemed, by token id (cti). In memory only: the issuer
 * key dies with the process, so no earlier token can verify after a restart. Entries are kept
 * until their token expires (an expired token is refused on its claims anyway).
 */
export interface IssuedToken {
  readonly uid: number;
  readonly exp: number;
  readonly resetCount: number;
  readonly restartCount: number;
  /** The token_redeemed entry, once redeemed (an execution report refers to it). */
  redeemed?: { readonly index: number; readonly leafHash: Uint8Array };
  spent: boolean;
  reported: boolean;
}

export class IssuedTokens {
  private readonly byId = new Map<string, IssuedToken>();
  /**
   * Token ids by expiry second: a sweep visits the expiry seconds in use (at most the longest TTL
   * plus the grace, in seconds) and the tokens it drops — not every live token, which at a
   * thousand tokens a second held the event loop for milliseconds once a second.
   */
  private readonly byExp = new Map<number, string[]>();
  private lastSweepS = 0;

  get size(): number {
    return this.byId.size;
  }

  add(id: Uint8Array, t: IssuedToken): void {
    const key = Buffer.from(id).toString("hex");
    this.byId.set(key, t);
    const ids = this.byExp.get(t.exp);
    if (ids) ids.push(key);
    else this.byExp.set(t.exp, [key]);
  }

  get(id: Uint8Array): IssuedToken | undefined {
    return this.byId.get(Buffer.from(id).toString("hex"));
  }

  /** Drops tokens expired for more than `graceS` seconds (at most once a second). */
  sweep(nowS: number, graceS = 60): void {
    if (nowS === this.lastSweepS) return;
    this.lastSweepS = nowS;
    for (const [exp, ids] of this.byExp) {
      if (exp + graceS >= nowS) continue;
      for (const id of ids) this.byId.delete(id);
      this.byExp.delete(exp);
    }
  }
}
