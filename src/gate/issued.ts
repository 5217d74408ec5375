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
  private lastSweepS = 0;

  get size(): number {
    return this.byId.size;
  }

  add(id: Uint8Array, t: IssuedToken): void {
    this.byId.set(Buffer.from(id).toString("hex"), t);
  }

  get(id: Uint8Array): IssuedToken | undefined {
    return this.byId.get(Buffer.from(id).toString("hex"));
  }

  /** Drops tokens expired for more than `graceS` seconds (at most once a second). */
  sweep(nowS: number, graceS = 60): void {
    if (nowS === this.lastSweepS) return;
    this.lastSweepS = nowS;
    for (const [k, t] of this.byId) if (t.exp + graceS < nowS) this.byId.delete(k);
  }
}
