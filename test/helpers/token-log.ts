import { generateKeyPairSync, type KeyObject, randomBytes } from "node:crypto";
import { encodeEpochBinding, epochHash } from "../../src/attest/binding.js";
import { type CborValue, encode } from "../../src/cbor/index.js";
import { digest } from "../../src/core/digest.js";
import { type BackRef, type Entry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { leafHash } from "../../src/lineage/hash.js";
import { type TokenClaims, tokenIdFor } from "../../src/token/claims.js";
import { issueToken } from "../../src/token/token.js";

/**
 * A lineage log built in memory the way the daemon writes it — daemon_start, an epoch per run,
 * request → allow → token_issued, token_redeemed — with real Ed25519 tokens, for the pure
 * auditor (`auditAttestation` with `requireTpm: false`: no quotes).
 */
export interface IssuedInLog {
  readonly token: Uint8Array;
  readonly claims: TokenClaims;
  readonly decision: BackRef;
}

/** How a run numbers its tokens: as now (bound to the allow) or as before (epoch seq ‖ per-run counter). */
export type TokenIds = "decision" | "per-run-counter";

const POLICY = new Uint8Array(32).fill(0x50);
const ZERO32 = new Uint8Array(32);

export class TokenLog {
  readonly entries: Entry[] = [];
  private run:
    | { readonly key: KeyObject; readonly epoch: Uint8Array; readonly epochRef: BackRef; counter: bigint }
    | undefined;

  constructor(private readonly ids: TokenIds = "decision") {}

  private append(e: Entry): BackRef {
    this.entries.push(e);
    return { index: this.entries.length - 1, leafHash: leafHash(encodeEntry(e)) };
  }

  private time() {
    return { wallMs: 1_700_000_000_000 + this.entries.length, monoUs: this.entries.length };
  }

  /** A daemon start: a fresh issuer key and its first epoch (seq 0), verified. */
  startRun(): void {
    const key = generateKeyPairSync("ed25519");
    const issuer = new Uint8Array(Buffer.from(key.publicKey.export({ format: "jwk" }).x!, "base64url"));
    this.append(
      makeEntry("daemon_start", this.time(), { reason: "start", configDigest: ZERO32, policyDigest: POLICY }),
    );
    const binding = {
      seq: 0,
      prev: ZERO32,
      issuer,
      checkpoint: { size: 0, root: ZERO32 },
      bootId: "boot",
      nonce: new Uint8Array(randomBytes(32)),
    };
    const quote = encode(
      new Map<string, CborValue>([
        ["binding", encodeEpochBinding(binding)],
        ["verified", true],
      ]),
    );
    const epochRef = this.append(
      makeEntry("epoch", this.time(), { quote, issuerKey: issuer, verified: true, policyDigest: POLICY }),
    );
    this.run = { key: key.privateKey, epoch: epochHash(binding), epochRef, counter: 0n };
  }

  /** request → allow → token_issued, as the daemon appends them; the token is returned. */
  issue(): IssuedInLog {
    const run = this.run;
    if (!run) throw new Error("startRun first");
    run.counter += 1n;
    const action = new Uint8Array(32).fill(1);
    const peer = { uid: 0, gid: 0, pid: 1, exeDigest: ZERO32 };
    const request = this.append(
      makeEntry("request", this.time(), {
        requestId: String(run.counter),
        scope: "dev",
        actionDigest: action,
        peer,
      }),
    );
    const decision = this.append(
      makeEntry("decision", this.time(), { allow: true }, [request, run.epochRef]),
    );
    let cti: Uint8Array;
    if (this.ids === "decision") cti = tokenIdFor(decision.index, decision.leafHash);
    else {
      // The old format: epoch seq (0: one epoch per run here) ‖ the run's request counter.
      cti = new Uint8Array(16);
      new DataView(cti.buffer).setBigUint64(8, run.counter);
    }
    const claims: TokenClaims = {
      iss: "execgate",
      sub: "uid:0",
      aud: "execgate",
      exp: 2_000_000_000,
      nbf: 1_700_000_000,
      iat: 1_700_000_000,
      cti,
      ueid: new Uint8Array(33).fill(1),
      scope: "dev",
      action,
      peer: { uid: 0, gid: 0, pid: 1, exe: ZERO32 },
      epoch: run.epoch,
      pcrDigest: ZERO32,
      policyDigest: POLICY,
      bootId: "boot",
      lineage: [decision.index, decision.leafHash],
    };
    const token = issueToken(claims, run.key);
    this.append(makeEntry("token_issued", this.time(), { digest: digest("sha256", token) }, [decision]));
    return { token, claims, decision };
  }

  /** token_redeemed of these token bytes, naming the allow they were issued under. */
  redeem(t: IssuedInLog): void {
    this.append(makeEntry("token_redeemed", this.time(), { token: t.token }, [t.decision]));
  }

  /** A clean stop. */
  stopRun(): void {
    this.append(makeEntry("daemon_stop", this.time(), { reason: "SIGTERM" }));
    this.run = undefined;
  }
}
