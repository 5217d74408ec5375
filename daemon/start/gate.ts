import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { AttestationLoop, type TpmEpochRoot } from "../../src/attest/loop.js";
import type { Config } from "../../src/config/index.js";
import { Gate } from "../../src/gate/gate.js";
import { spkiDer } from "../../src/hsm/keys.js";
import { hsmTokenSigner } from "../../src/hsm/token.js";
import { writeAuditBundle } from "../../src/lineage/export-bundle.js";
import { gateHandler } from "../../src/router/handler.js";
import { imaExeCheck } from "../../src/router/ima-exe-check.js";
import type { RequestHandler } from "../../src/server/server.js";
import { memoryTokenSigner, SigningThread } from "../../src/token/sign-thread.js";
import { writeTpmEnrollment } from "../export-enrollment.js";
import { monoUs } from "./clock.js";
import { evidenceReply } from "./evidence-reply.js";
import type { Settings } from "./settings.js";
import { singleFlight } from "./single-flight.js";
import type { Store } from "./store.js";
import type { TrustRoots } from "./trust-roots.js";

/** The attestation loop, the gate deciding against it, and the router in front of the gate. */
export interface BuiltGate {
  readonly loop: AttestationLoop;
  readonly gate: Gate;
  readonly handler: RequestHandler;
}

/** Builds, starts nothing: the first epoch and the socket are the serve stage's. */
export function buildGate(s: Settings, roots: TrustRoots, store: Store): BuiltGate {
  const issuer = generateKeyPairSync("ed25519");
  const issuerRaw = new Uint8Array(Buffer.from(issuer.publicKey.export({ format: "jwk" }).x!, "base64url"));
  const loop = attestationLoop(s, roots, store, issuerRaw);
  const gate = new Gate({
    lineage: store.lineage,
    loop,
    policy: () => s.policy.current,
    policyStatus: () => s.policy.status(Date.now()),
    tokenSigner:
      s.config.hsm.tokenSigner === "hsm" && roots.hsmKey
        ? hsmTokenSigner(roots.hsmKey)
        : memoryTokenSigner(issuer.privateKey, issuer.publicKey, new SigningThread(issuer.privateKey)),
    audience: s.config.token.audience,
    issuer: s.config.token.issuer,
    skewS: s.config.token.skewS,
    maxEvidenceAgeMs: s.config.attest.maxEvidenceAgeMs,
    freshWaitMs: s.config.attest.freshWaitMs ?? s.config.attest.epochMs * 2 + s.config.tpm.timeoutMs,
    bootId: s.bootId,
    ueid: roots.ueid,
    now: Date.now,
    monoUs,
    log: s.log.child({ component: "gate" }),
    diskSpace: () => store.disk.latest(),
    denialWindowMs: s.config.limits.denialWindowMs,
  });
  return { loop, gate, handler: router(s.config, roots, store, loop, gate, issuerRaw) };
}

/** The epochs: quoted by the TPM root, signed by the HSM root in HSM modes, or both. */
function attestationLoop(
  s: Settings,
  roots: TrustRoots,
  store: Store,
  issuerKey: Uint8Array,
): AttestationLoop {
  const { config } = s;
  const tpmRoot: TpmEpochRoot | { readonly runner?: undefined } = roots.tpm
    ? {
        runner: roots.runner,
        akHandle: config.tpm.akHandle,
        akPublic: roots.tpm.akPublic,
        selection: config.tpm.pcrs,
      }
    : {};
  const hsmRoot = roots.roots !== "tpm" ? roots.hsmKey : undefined;
  return new AttestationLoop({
    ...tpmRoot,
    ...(hsmRoot ? { hsm: hsmRoot } : {}),
    policy: () => s.policy.current,
    issuerKey,
    lineage: store.lineage,
    blobs: store.blobs,
    bootIdPath: config.daemon.bootIdPath,
    ...(config.attest.eventlog ? { eventlogPath: config.attest.eventlog } : {}),
    ...(config.attest.ima ? { imaPath: config.attest.ima } : {}),
    epochMs: config.attest.epochMs,
    idleEpochMs: config.attest.idleEpochMs,
    now: Date.now,
    monoUs,
    log: s.log.child({ component: "attest" }),
  });
}

/** The router with its evidence replies, the single-flight export and the IMA check of callers. */
function router(
  config: Config,
  roots: TrustRoots,
  store: Store,
  loop: AttestationLoop,
  gate: Gate,
  issuerKey: Uint8Array,
): RequestHandler {
  const hsmRoot = roots.roots !== "tpm" ? roots.hsmKey : undefined;
  const evidence = evidenceReply({
    epochs: loop.recent,
    checkpoint: () => store.lineage.latestCheckpoint()?.note,
    issuerKey,
    akPublic: roots.tpm?.akPublicBytes,
    // The HSM key never changes while the daemon runs: its DER SPKI is made once.
    hsmPublic: hsmRoot ? spkiDer(hsmRoot.publicKey) : undefined,
  });
  // One export at a time: each replaces the previous one in exportsDir, so concurrent requests
  // share the one in progress instead of removing each other's output.
  const exportOnce = singleFlight(() =>
    writeAuditBundle({
      lineage: store.lineage,
      blobsDir: join(config.lineage.dir, "blobs"),
      exportsDir: join(config.daemon.stateDir, "exports"),
      ...(roots.useTpm
        ? {
            writeEnrollment: (e: string) =>
              writeTpmEnrollment(e, {
                runner: roots.runner,
                akHandle: config.tpm.akHandle,
                signingKeyHandle: config.tpm.signingKeyHandle,
              }),
          }
        : {}),
      ...(roots.hsmKey ? { hsmPublicKey: roots.hsmKey.publicKey } : {}),
    }),
  );
  // With a TPM and an IMA list, callers' executables are checked against IMA's measurements.
  const imaCheck =
    roots.useTpm && config.attest.ima
      ? imaExeCheck(
          (path) => loop.imaMeasurements(path),
          () => loop.refresh(),
        )
      : undefined;
  return gateHandler(gate, evidence, exportOnce, imaCheck);
}
