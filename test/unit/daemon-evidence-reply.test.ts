import { describe, expect, it } from "vitest";
import { evidenceReply } from "../../daemon/start/evidence-reply.js";
import type { EvidenceState } from "../../src/attest/evidence.js";
import { RecentEpochs } from "../../src/attest/recent-epochs.js";

// The `evidence` reply: the current epoch's or a recent one's by hash, with the keys a verifier needs.

const hash = (n: number) => new Uint8Array(32).fill(n);
const state = (n: number): EvidenceState => ({
  epochSeq: n,
  epochHash: hash(n),
  startedAtMs: 0,
  startedMonoUs: n,
  verifiedAtMs: 0,
  bootId: "b",
  resetCount: 0,
  restartCount: 0,
  pcrDigest: new Uint8Array(32),
  policyDigest: new Uint8Array(32),
  integrity: { ok: true },
});
const ISSUER = new Uint8Array(32).fill(0xee);
const AK = Uint8Array.of(0xa1, 0xa2);

function epochs(): RecentEpochs {
  const r = new RecentEpochs();
  r.add(hash(1), state(1), Uint8Array.of(1), Uint8Array.of(0x51));
  r.add(hash(2), state(2), Uint8Array.of(2), Uint8Array.of(0x52));
  return r;
}

describe("evidenceReply", () => {
  it("TPM root: the current epoch with its hash, record, issuer key, AK and checkpoint; no HSM fields", () => {
    const reply = evidenceReply({
      epochs: epochs(),
      checkpoint: () => "note text",
      issuerKey: ISSUER,
      akPublic: AK,
      hsmPublic: undefined,
    });
    expect(reply(undefined)).toEqual({
      epoch_hash: hash(2),
      record: Uint8Array.of(2),
      issuer_key: ISSUER,
      ak_public: AK,
      checkpoint: "note text",
    });
  });

  it("a recent epoch by hash; an epoch this run does not have is undefined (the router denies it)", () => {
    const reply = evidenceReply({
      epochs: epochs(),
      checkpoint: () => undefined,
      issuerKey: ISSUER,
      akPublic: AK,
      hsmPublic: undefined,
    });
    expect(reply(hash(1))).toMatchObject({ epoch_hash: hash(1), record: Uint8Array.of(1), checkpoint: null });
    expect(reply(hash(9))).toBeUndefined();
    expect(evidenceReply({ ...sources(), epochs: new RecentEpochs() })(undefined)).toBeUndefined();
  });

  it("HSM root: the named epoch's HSM signature and the HSM key; no AK is null", () => {
    const reply = evidenceReply({ ...sources(), akPublic: undefined, hsmPublic: Uint8Array.of(0x30) });
    expect(reply(hash(1))).toEqual({
      epoch_hash: hash(1),
      record: Uint8Array.of(1),
      issuer_key: ISSUER,
      ak_public: null,
      checkpoint: null,
      hsm_signature: Uint8Array.of(0x51),
      hsm_public: Uint8Array.of(0x30),
    });
    expect(reply(undefined)).toMatchObject({ epoch_hash: hash(2), hsm_signature: Uint8Array.of(0x52) });
  });
});

function sources() {
  return {
    epochs: epochs(),
    checkpoint: () => undefined,
    issuerKey: ISSUER,
    akPublic: AK,
    hsmPublic: undefined,
  };
}
