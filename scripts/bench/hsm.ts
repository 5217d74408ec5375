import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { SoftHsm } from "../../src/dev/softhsm.js";
import { HsmKey } from "../../src/hsm/hsm.js";
import { hsmTokenSigner } from "../../src/hsm/token.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { signTokenWith, verifyTokenWith } from "../../src/token/signer.js";
import { issueToken } from "../../src/token/token.js";
import { type BenchRow, type BenchSuite, percentile, timeRuns } from "./types.js";

function stats(sorted: number[]): Record<string, number> {
  const median = percentile(sorted, 50);
  return { median_ms: median, p99_ms: percentile(sorted, 99), ops_per_s: 1000 / median, n: sorted.length };
}

function claims(i: number): TokenClaims {
  const cti = new Uint8Array(16);
  new DataView(cti.buffer).setUint32(12, i);
  return {
    iss: "execgate",
    sub: "uid:1000",
    aud: "execgate",
    exp: 2_000_000_060,
    nbf: 2_000_000_000,
    iat: 2_000_000_000,
    cti,
    ueid: new Uint8Array(33).fill(1),
    scope: "dev",
    action: new Uint8Array(32).fill(2),
    peer: { uid: 1000, gid: 1000, pid: 4242, exe: new Uint8Array(32).fill(3) },
    epoch: new Uint8Array(32).fill(4),
    pcrDigest: new Uint8Array(32).fill(5),
    policyDigest: new Uint8Array(32).fill(6),
    bootId: "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01",
    lineage: [12345, new Uint8Array(32).fill(7)],
  };
}

/** Throughput over `seconds` with `inFlight` signatures outstanding (threadpool concurrency). */
async function throughput(
  inFlight: number,
  total: number,
  f: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await f(next++);
    }),
  );
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/**
 * Token signing with the HSM key directly (hsm.token_signer = "hsm": SoftHSM2 through pkcs11js,
 * C_SignAsync on the threadpool) against the in-memory Ed25519 issuer key, in the same run.
 * Only signing + COSE encoding is measured (the daemon's lineage commit is the same for both).
 */
export const suite: BenchSuite = {
  name: "hsm",
  async run(ctx) {
    const n = ctx.quick ? 300 : 3000;
    const rows: BenchRow[] = [];
    const issuer = generateKeyPairSync("ed25519");
    let i = 0;
    const memory = await timeRuns(n, 100, () => issueToken(claims(i++), issuer.privateKey));
    const base = "token signing, in-memory Ed25519 issuer key (node:crypto), sequential";
    rows.push({ name: base, values: stats(memory) });

    const hsm = await SoftHsm.create({ dir: join(ctx.dir, "hsm") });
    process.env.SOFTHSM2_CONF = hsm.conf; // before this process first initialises the module
    for (const [label, type, alg] of [
      ["bench-p256", "ec", "ES256, CKM_ECDSA P-256"],
      ["bench-ed", "ed25519", "EdDSA, CKM_EDDSA Ed25519"],
    ] as const) {
      await hsm.generateKey(label, type);
      const key = await HsmKey.open({
        module: hsm.module,
        tokenLabel: hsm.label,
        keyLabel: label,
        pin: hsm.pin,
        sessions: 4,
      });
      try {
        const signer = hsmTokenSigner(key);
        const sample = await signTokenWith(claims(0), signer);
        const ok = verifyTokenWith(sample, signer.alg, {
          issuerPublicKey: key.publicKey,
          audience: "execgate",
          now: 2_000_000_001,
        });
        if (!ok.ok) throw new Error(`bench HSM token does not verify: ${ok.detail}`);
        const seq = await timeRuns(n, 100, () => signTokenWith(claims(i++), signer));
        const medianMs = percentile(seq, 50);
        rows.push({
          name: `token signing, HSM key directly (${alg}, SoftHSM2, C_SignAsync), sequential`,
          values: stats(seq),
          baseline: base,
          note: `${(medianMs / percentile(memory, 50)).toFixed(1)}× the in-memory key's median`,
        });
        const conc = await throughput(4, n, async () => signTokenWith(claims(i++), signer));
        rows.push({
          name: `token signing, HSM key directly (${alg}), 4 in flight over 4 sessions`,
          values: { ops_per_s: conc, n },
          baseline: base,
        });
        const raw = await timeRuns(n, 100, () => key.sign(new Uint8Array(32)));
        rows.push({ name: `raw HSM signature (${alg}, 32-byte message), sequential`, values: stats(raw) });
      } finally {
        await key.close();
      }
    }
    ctx.log(`HSM suite: ${rows.length} rows`);
    return rows;
  },
};
