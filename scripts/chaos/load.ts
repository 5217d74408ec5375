import { createHash } from "node:crypto";
import { ExecgateClient, ExecgateDenied } from "../../src/client/index.js";

/** What the daemon acknowledged: SHA-256 (hex) of each token it released, and of each it redeemed. */
export interface Acknowledged {
  readonly tokens: Set<string>;
  readonly redeems: Set<string>;
  /** Denials the clients got, by reason (not acknowledgements; for the report). */
  readonly denials: Map<string, number>;
}

export function newAcknowledged(): Acknowledged {
  return { tokens: new Set(), redeems: new Set(), denials: new Map() };
}

export const tokenHash = (token: Uint8Array): string => createHash("sha256").update(token).digest("hex");

export interface Load {
  /** Resolves once every worker stopped (their connection died with the daemon). */
  readonly done: Promise<void>;
  /**
   * Resolves at the first token released (or when the workers stop): a fresh daemon first
   * hashes each new caller's executable, and the kill should fall in load, not in that.
   */
  readonly serving: Promise<void>;
  close(): Promise<void>;
}

/** A token released and redeemed on the same connection; one in `skipRedeemEvery` is kept unredeemed. */
const SKIP_REDEEM_EVERY = 4;

/**
 * `clients` connections, each with `depth` workers in flight: request a token, record it once
 * released, redeem it (most of them), record the redeem once acknowledged. A denial is counted
 * and the worker goes on; any other failure (the daemon died) ends the worker.
 */
export async function startLoad(o: {
  socket: string;
  clients: number;
  depth: number;
  acked: Acknowledged;
}): Promise<Load> {
  const conns = await Promise.all(
    Array.from({ length: o.clients }, () => ExecgateClient.connect(o.socket, { timeoutMs: 20_000 })),
  );
  const denied = (e: unknown): boolean => {
    if (!(e instanceof ExecgateDenied)) return false;
    o.acked.denials.set(e.reason, (o.acked.denials.get(e.reason) ?? 0) + 1);
    return true;
  };
  let served: () => void = () => undefined;
  const serving = new Promise<void>((r) => {
    served = r;
  });
  const worker = async (c: ExecgateClient, w: number): Promise<void> => {
    for (let n = 0; ; n++) {
      let token: Uint8Array;
      try {
        token = (await c.requestToken({ scope: "dev", argv: ["/bin/true", "chaos", String(w), String(n)] }))
          .token;
      } catch (e) {
        if (!denied(e)) return;
        // A denial storm (e.g. attestation lost) must not spin this process.
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const h = tokenHash(token);
      o.acked.tokens.add(h);
      served();
      if (n % SKIP_REDEEM_EVERY === SKIP_REDEEM_EVERY - 1) continue;
      try {
        await c.redeem(token);
        o.acked.redeems.add(h);
      } catch (e) {
        if (!denied(e)) return;
      }
    }
  };
  const done = Promise.all(
    conns.flatMap((c, i) => Array.from({ length: o.depth }, (_, d) => worker(c, i * o.depth + d))),
  ).then(() => served());
  return {
    done,
    serving,
    async close() {
      for (const c of conns) await c.close().catch(() => undefined);
    },
  };
}
