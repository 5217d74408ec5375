import { ExecgateError } from "../../core/errors.js";
import { fromHex } from "../../core/hex.js";
import type { ExploredEntry } from "./entry-view.js";

/**
 * One execution's chain, joined by token id (pure): request → decision → token_issued →
 * token_redeemed → execution_report, and the epoch the decision was made on. The token id names
 * its allow decision (its index, 8 bytes BE, ‖ the first 8 bytes of its leaf hash: tokenIdFor),
 * so the chain is found from the id alone, without the token bytes.
 */
export interface TokenLinks {
  readonly tokenId: string;
  readonly decision: number;
  readonly request?: number;
  readonly epoch?: number;
  readonly issued?: number;
  readonly redeemed?: number;
  readonly report?: number;
  /** Denials that name this token's allow (redeemed again, withdrawn, reported twice). */
  readonly denials: readonly number[];
}

/** The allow decision's index a token id names, and the leaf-hash prefix it must have. */
export function parseTokenId(hex: string): { tokenId: string; decisionIndex: number; leafPrefix: string } {
  const t = hex.trim().toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(t))
    throw new ExecgateError(
      "malformed",
      "token id: 32 hex digits (the cti: decision index ‖ leaf hash prefix)",
    );
  const b = fromHex(t);
  const index = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
  if (index > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ExecgateError("malformed", "token id: index out of range");
  return { tokenId: t, decisionIndex: Number(index), leafPrefix: t.slice(16) };
}

/** Collects a token's links from entries observed in log order (constant memory per token). */
export class TokenChainCollector {
  private readonly links: {
    decision?: number;
    request?: number;
    epoch?: number;
    issued?: number;
    redeemed?: number;
    report?: number;
  } = {};
  private readonly denials: number[] = [];
  readonly decisionIndex: number;
  readonly tokenId: string;

  constructor(tokenIdHex: string) {
    const t = parseTokenId(tokenIdHex);
    this.tokenId = t.tokenId;
    this.decisionIndex = t.decisionIndex;
  }

  observe(e: ExploredEntry): void {
    if (e.tokenId !== this.tokenId) return;
    switch (e.type) {
      case "decision":
        if (e.allow === true && e.index === this.decisionIndex) {
          this.links.decision = e.index;
          for (const r of e.refs) {
            if (r.type === "request") this.links.request = r.index;
            if (r.type === "epoch") this.links.epoch = r.index;
          }
        } else if (e.denial !== undefined) this.denials.push(e.index);
        break;
      case "token_issued":
        this.links.issued ??= e.index;
        break;
      case "token_redeemed":
        this.links.redeemed ??= e.index;
        break;
      case "execution_report":
        this.links.report ??= e.index;
        break;
      default:
        break;
    }
  }

  /** The chain, or undefined if no allow decision with this id was seen. */
  result(): TokenLinks | undefined {
    const l = this.links;
    if (l.decision === undefined) return undefined;
    return {
      tokenId: this.tokenId,
      decision: l.decision,
      ...(l.request !== undefined ? { request: l.request } : {}),
      ...(l.epoch !== undefined ? { epoch: l.epoch } : {}),
      ...(l.issued !== undefined ? { issued: l.issued } : {}),
      ...(l.redeemed !== undefined ? { redeemed: l.redeemed } : {}),
      ...(l.report !== undefined ? { report: l.report } : {}),
      denials: [...this.denials],
    };
  }
}
