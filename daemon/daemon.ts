import { generateKeyPairSync, type KeyObject } from "node:crypto";
import type { Server } from "node:net";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { readBootId } from "../src/attest/boot-id.js";
import { AttestationLoop, type TpmEpochRoot } from "../src/attest/loop.js";
import type { CborValue } from "../src/cbor/index.js";
import { type Config, configDigest, loadConfig } from "../src/config/index.js";
import { asExecgateError, ExecgateError } from "../src/core/errors.js";
import { RepeatedFailure } from "../src/core/repeated-failure.js";
import { Gate } from "../src/gate/gate.js";
import { HsmKey } from "../src/hsm/hsm.js";
import { spkiDer } from "../src/hsm/keys.js";
import { hsmNoteSigner } from "../src/hsm/note-signer.js";
import { readPin } from "../src/hsm/pin.js";
import { hsmTokenSigner } from "../src/hsm/token.js";
import { BlobStore } from "../src/lineage/blobs.js";
import { DISK_SAMPLE_MS, DiskSpaceWatch } from "../src/lineage/disk-space.js";
import { makeEntry } from "../src/lineage/entry.js";
import { writeAuditBundle } from "../src/lineage/export-bundle.js";
import { type Lineage, openLineage } from "../src/lineage/lineage.js";
import { algById, type BankName } from "../src/measure/hash.js";
import { DaemonMetrics } from "../src/metrics/daemon-metrics.js";
import { renderExposition } from "../src/metrics/exposition.js";
import { timeHsmSigning } from "../src/metrics/hsm.js";
import { type MetricsServer, startMetricsServer } from "../src/metrics/server.js";
import { TimedTpmRunner } from "../src/metrics/tpm.js";
import { loadNative, sdNotify } from "../src/native/index.js";
import { PolicyHolder } from "../src/policy/holder.js";
import { checkQuotedPcrs } from "../src/policy/integrity-schema.js";
import { type LoadedPolicy, loadPolicy, policyBlobs } from "../src/policy/load.js";
import { openListener, ServiceNotifier, watchdogUsecFromEnv } from "../src/server/activation.js";
import { GateServer } from "../src/server/server.js";
import { SigningThread } from "../src/token/sign-thread.js";
import { hostIdOf, lineageOrigin, UEID_TYPE_RAND, ueidOfEk, ueidOfKey } from "../src/token/ueid.js";
import { notAnAttestationKey, notATpmSigningKey } from "../src/tpm/key-attributes.js";
import { tpmNoteSigner } from "../src/tpm/note-signer.js";
import { HANDLES } from "../src/tpm/ops/handles.js";
import { readPublic } from "../src/tpm/ops/keys.js";
import { type PcrSelection, pcrIndices } from "../src/tpm/structures/pcr-selection.js";
import { parseTpm2bPublic, type TpmtPublic, tpmPublicKey } from "../src/tpm/structures/public.js";
import { checkEkChain } from "./ek-check.js";
import { EXIT } from "./exit.js";
import { gateHandler, imaExeCheck } from "./handler.js";
import { runStopSteps, type StopStep } from "./stop.js";

/**
 * `execgate daemon`: reads the configuration, checks that every part it depends on is usable
 * (native addon, policy, TPM keys, lineage store) — refusing to start otherwise — then runs the
 * attestation loop, the checkpointer and the socket server until SIGTERM/SIGINT. SIGHUP reloads
 * the policy (a policy that fails to load keeps the old one, and says so).
 */
export interface RunningDaemon {
  readonly socket: string;
  /** Resolves with the exit code when the daemon has stopped. */
  readonly done: Promise<number>;
  stop(reason: string): Promise<void>;
}

/** A refusal to start: a message for the operator and the exit code (2 configuration, 3 I/O). */
export class StartupError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

function refuse(what: string, e: unknown): StartupError {
  const err = asExecgateError(e);
  const code = err.code === "config_invalid" || err.code === "usage" ? EXIT.usage : EXIT.io;
  return new StartupError(code, `refusing to start: ${what}: ${err.message}`);
}

/** tpm.pcrs as bank name → PCR indices. */
function selectedPcrs(selection: PcrSelection): Partial<Record<BankName, number[]>> {
  const out: Partial<Record<BankName, number[]>> = {};
  for (const b of selection) {
    const alg = algById(b.hashAlg);
    if (alg) out[alg.name] = pcrIndices(b);
  }
  return out;
}

const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

export async function startDaemon(configPath: string, opts: { log?: Logger } = {}): Promise<RunningDaemon> {
  let config: Config;
  try {
    config = await loadConfig(configPath);
  } catch (e) {
    throw refuse(`configuration ${configPath}`, e);
  }
  const log =
    opts.log ?? pino({ level: config.daemon.logLevel, base: { service: "execgate" } }, pino.destination(2));
  try {
    loadNative();
  } catch (e) {
    throw refuse("native addon", e);
  }
  let watchdogUsec: number | undefined;
  try {
    watchdogUsec = watchdogUsecFromEnv(process.env, process.pid);
  } catch (e) {
    throw refuse("systemd watchdog (WATCHDOG_USEC)", e);
  }

  let policy: PolicyHolder;
  try {
    policy = new PolicyHolder(await loadPolicy(config.daemon.policy), Date.now());
  } catch (e) {
    throw refuse(`policy ${config.daemon.policy}`, e);
  }

  // Roots of trust (docs/hsm.md): the TPM unless hsm.require = "hsm".
  const roots = config.hsm.require;
  const useTpm = roots !== "hsm";
  /** With a TPM root, rules about PCRs the quotes never sign are refused (at start and reload). */
  const quotedPcrs = useTpm ? selectedPcrs(config.tpm.pcrs) : undefined;
  const checkQuoted = (p: LoadedPolicy): LoadedPolicy => {
    if (quotedPcrs) checkQuotedPcrs(p.policy.integrity, quotedPcrs);
    return p;
  };
  try {
    checkQuoted(policy.current);
  } catch (e) {
    throw refuse(`policy ${config.daemon.policy}`, e);
  }

  // Tokens are bound to this boot: a boot id that cannot be read now could never be matched.
  let bootId: string;
  try {
    bootId = await readBootId(config.daemon.bootIdPath);
  } catch (e) {
    throw refuse("daemon.boot_id_path", e);
  }

  const metrics = new DaemonMetrics(Date.now());
  const runner = new TimedTpmRunner(
    { tcti: config.tpm.tcti, timeoutMs: config.tpm.timeoutMs },
    metrics.tpmLatency,
  );
  // The HSM key when an epoch needs its signature or it signs the checkpoints.
  const checkpointSigner = config.hsm.checkpoints ?? (roots === "hsm" ? "hsm" : "tpm");
  let hsmKey: HsmKey | undefined;
  if (roots !== "tpm" || checkpointSigner !== "tpm" || config.hsm.tokenSigner === "hsm") {
    try {
      const pin = await readPin({
        ...(config.hsm.pinFile !== undefined ? { pinFile: config.hsm.pinFile } : {}),
        ...(config.hsm.pinCredential !== undefined ? { pinCredential: config.hsm.pinCredential } : {}),
      });
      hsmKey = await HsmKey.open({
        module: config.hsm.module,
        tokenLabel: config.hsm.tokenLabel,
        keyLabel: config.hsm.keyLabel,
        pin,
      });
      timeHsmSigning(hsmKey, metrics.hsmLatency);
    } catch (e) {
      throw refuse(`HSM (token ${config.hsm.tokenLabel}, key ${config.hsm.keyLabel})`, e);
    }
  }
  let akPublic: KeyObject | undefined;
  let akPublicBytes: Uint8Array | undefined;
  let signingPublic: KeyObject | undefined;
  let ueid: Uint8Array = hsmKey
    ? ueidOfKey(hsmKey.publicKey)
    : Uint8Array.of(UEID_TYPE_RAND, ...new Uint8Array(32));
  if (useTpm)
    try {
      const ak = await readPublic(runner, config.tpm.akHandle);
      const sk = await readPublic(runner, config.tpm.signingKeyHandle);
      const ek = await readPublic(runner, HANDLES.ekRsa);
      if (!ak || !sk || !ek)
        throw new ExecgateError("config_invalid", "the TPM is not enrolled: run `execgate enroll` first");
      const [akArea, skArea, ekArea] = [ak, sk, ek].map(parseTpm2bPublic) as [
        TpmtPublic,
        TpmtPublic,
        TpmtPublic,
      ];
      if (config.tpm.ekCaBundle !== undefined)
        await checkEkChain(runner, config.tpm.ekCaBundle, tpmPublicKey(ekArea), new Date());
      // The keys at the configured handles must be fit for their roles: a key that is not a
      // restricted TPM-resident AK could sign a forged quote (TPM2_Sign over any TPMS_ATTEST).
      const akProblem = notAnAttestationKey(akArea);
      if (akProblem) throw new ExecgateError("config_invalid", `the key at tpm.ak_handle is ${akProblem}`);
      const skProblem = notATpmSigningKey(skArea);
      if (skProblem)
        throw new ExecgateError("config_invalid", `the key at tpm.signing_key_handle is ${skProblem}`);
      akPublic = tpmPublicKey(akArea);
      akPublicBytes = ak;
      signingPublic = tpmPublicKey(skArea);
      ueid = ueidOfEk(ekArea);
    } catch (e) {
      await hsmKey?.close();
      throw refuse(`TPM (${config.tpm.tcti})`, e);
    }

  const hostId = hostIdOf(ueid);
  let lineage: Lineage;
  try {
    lineage = await openLineage({
      dir: config.lineage.dir,
      origin: lineageOrigin(ueid),
      signer:
        checkpointSigner === "hsm" && hsmKey
          ? hsmNoteSigner(hsmKey, `execgate-${hostId}`)
          : tpmNoteSigner(runner, config.tpm.signingKeyHandle, signingPublic!, `execgate-${hostId}`),
      // checkpoints = "both": the TPM key is the log key, the HSM key co-signs every checkpoint.
      ...(checkpointSigner === "both" && hsmKey
        ? { cosigners: [hsmNoteSigner(hsmKey, `execgate-${hostId}-hsm`)] }
        : {}),
      now: Date.now,
      checkpointMs: config.lineage.checkpointMs,
      segmentBytes: config.lineage.segmentBytes,
    });
  } catch (e) {
    await hsmKey?.close();
    throw refuse(`lineage store ${config.lineage.dir}`, e);
  }
  const time = () => ({ wallMs: Date.now(), monoUs: monoUs() });
  /** The end of every stop once the lineage is open, a refused start included: it records why and closes. */
  const closeLineageSteps = (reason: string): StopStep[] => [
    ["daemon_stop", () => lineage.journal.append(makeEntry("daemon_stop", time(), { reason }))],
    ["lineage", () => lineage.close()],
    ["hsm", () => hsmKey?.close()],
  ];
  /**
   * A refusal to start once the lineage is open: `steps` stop what was started, in the stop
   * order, and record the refusal as the daemon_stop reason (each step whatever failed before it).
   */
  const refuseOpened = async (
    what: string,
    e: unknown,
    steps: (reason: string) => StopStep[],
  ): Promise<StartupError> => {
    const refusal = refuse(what, e);
    await runStopSteps(steps(refusal.message), log);
    return refusal;
  };
  let blobs: BlobStore;
  try {
    blobs = await BlobStore.open(join(config.lineage.dir, "blobs"));
  } catch (e) {
    throw await refuseOpened(`lineage store ${config.lineage.dir}`, e, closeLineageSteps);
  }

  const issuer = generateKeyPairSync("ed25519");
  const issuerRaw = new Uint8Array(Buffer.from(issuer.publicKey.export({ format: "jwk" }).x!, "base64url"));
  /** The policy's record and files, each by its digest, before a policy_loaded entry names them (for auditors). */
  const storePolicy = async (p: LoadedPolicy): Promise<void> => {
    for (const b of policyBlobs(p)) await blobs.put(b);
  };

  try {
    const rec = lineage.journal.recovery;
    if (rec.truncatedBytes > 0 || rec.removedSegments.length > 0) {
      await lineage.journal.append(
        makeEntry("recovery", time(), {
          reason: "torn tail after a crash",
          truncatedBytes: rec.truncatedBytes,
          recoveredSize: rec.size,
        }),
      );
    }
    await lineage.journal.append(
      makeEntry("daemon_start", time(), {
        reason: "start",
        configDigest: configDigest(config),
        policyDigest: policy.current.digest,
      }),
    );
    await storePolicy(policy.current);
    await lineage.journal.append(
      makeEntry("policy_loaded", time(), {
        policyDigest: policy.current.digest,
        source: config.daemon.policy,
      }),
    );
  } catch (e) {
    throw await refuseOpened("lineage store is not writable", e, closeLineageSteps);
  }
  // The lineage grows with every token and a full disk denies everything: its free space is
  // sampled for status and metrics, and logged when low (src/lineage/disk-space.ts).
  const disk = new DiskSpaceWatch(config.lineage.dir, DISK_SAMPLE_MS, log.child({ component: "lineage" }));
  await disk.start();

  const tpmRoot: TpmEpochRoot | { readonly runner?: undefined } =
    useTpm && akPublic ? { runner, akHandle: config.tpm.akHandle, akPublic, selection: config.tpm.pcrs } : {};
  const loop = new AttestationLoop({
    ...tpmRoot,
    ...(roots !== "tpm" && hsmKey ? { hsm: hsmKey } : {}),
    policy: () => policy.current,
    issuerKey: issuerRaw,
    lineage,
    blobs,
    bootIdPath: config.daemon.bootIdPath,
    ...(config.attest.eventlog ? { eventlogPath: config.attest.eventlog } : {}),
    ...(config.attest.ima ? { imaPath: config.attest.ima } : {}),
    epochMs: config.attest.epochMs,
    idleEpochMs: config.attest.idleEpochMs,
    now: Date.now,
    monoUs,
    log: log.child({ component: "attest" }),
  });

  const gate = new Gate({
    lineage,
    loop,
    policy: () => policy.current,
    policyStatus: () => policy.status(Date.now()),
    issuerPrivateKey: issuer.privateKey,
    issuerPublicKey: issuer.publicKey,
    ...(config.hsm.tokenSigner === "hsm" && hsmKey
      ? { tokenSigner: hsmTokenSigner(hsmKey) }
      : { signingThread: new SigningThread(issuer.privateKey) }),
    audience: config.token.audience,
    issuer: config.token.issuer,
    skewS: config.token.skewS,
    maxEvidenceAgeMs: config.attest.maxEvidenceAgeMs,
    freshWaitMs: config.attest.freshWaitMs ?? config.attest.epochMs * 2 + config.tpm.timeoutMs,
    bootId,
    ueid,
    now: Date.now,
    monoUs,
    log: log.child({ component: "gate" }),
    diskSpace: () => disk.latest(),
    denialWindowMs: config.limits.denialWindowMs,
  });

  /** The current epoch's evidence, or a recent epoch's by hash (what a token names). */
  // The HSM key never changes while the daemon runs: its DER SPKI is made once.
  const hsmPublicDer = hsmKey ? spkiDer(hsmKey.publicKey) : undefined;
  const evidence = (epoch: Uint8Array | undefined): Record<string, CborValue> | undefined => {
    const record = epoch ? loop.recordOf(epoch) : loop.currentRecord();
    if (!record) return undefined;
    const cp = lineage.checkpointer.latest();
    return {
      epoch_hash: epoch ?? loop.current()?.epochHash ?? null,
      record,
      issuer_key: issuerRaw,
      ak_public: akPublicBytes ?? null,
      checkpoint: cp?.note ?? null,
      // HSM modes: the epoch's HSM signature and the HSM key (DER SPKI) — verifyTokenBoundHsm.
      ...(roots !== "tpm" && hsmKey
        ? {
            hsm_signature:
              loop.hsmSignatureOf(epoch ?? loop.current()?.epochHash ?? new Uint8Array()) ?? null,
            hsm_public: hsmPublicDer ?? null,
          }
        : {}),
    };
  };

  // One export at a time: each replaces the previous one in exportsDir, so concurrent requests
  // share the one in progress instead of removing each other's output.
  let exporting: Promise<{ path: string; size: number }> | undefined;
  const exportOnce = () =>
    (exporting ??= writeAuditBundle({
      lineage,
      blobsDir: join(config.lineage.dir, "blobs"),
      exportsDir: join(config.daemon.stateDir, "exports"),
      ...(useTpm
        ? { tpm: { runner, akHandle: config.tpm.akHandle, signingKeyHandle: config.tpm.signingKeyHandle } }
        : {}),
      ...(hsmKey ? { hsmPublicKey: hsmKey.publicKey } : {}),
    }).finally(() => {
      exporting = undefined;
    }));

  const server = new GateServer(
    gateHandler(
      gate,
      evidence,
      exportOnce,
      // With a TPM and an IMA list, callers' executables are checked against IMA's measurements.
      useTpm && config.attest.ima
        ? imaExeCheck(
            (path) => loop.imaMeasurements(path),
            () => loop.refresh(),
          )
        : undefined,
    ),
    {
      maxFrameBytes: config.limits.maxFrameBytes,
      maxConnections: config.limits.maxConnections,
      maxConnectionsPerUid: config.limits.maxConnectionsPerUid,
      readTimeoutMs: config.limits.readTimeoutMs,
      idleTimeoutMs: config.limits.idleTimeoutMs,
      requestsPerSecondPerUid: config.limits.requestsPerSecondPerUid,
      burstPerUid: config.limits.burstPerUid,
    },
    log.child({ component: "server" }),
    () => performance.now(),
    (op, seconds) => metrics.requestDuration.observe(op, seconds),
  );

  // systemd: READY=1 with the first verified epoch, STATUS= every epoch, WATCHDOG=1 only from
  // healthy completed epochs (src/server/activation.ts). Registered before the first epoch.
  const notifier = new ServiceNotifier({
    send: (m) => sdNotify(m),
    ...(watchdogUsec !== undefined ? { watchdogUsec } : {}),
    now: Date.now,
    onError: (e) => log.warn({ err: asExecgateError(e).message }, "sd_notify_failed"),
  });
  if (watchdogUsec !== undefined && watchdogUsec / 1000 <= config.attest.idleEpochMs + config.tpm.timeoutMs)
    log.warn(
      {
        watchdogMs: watchdogUsec / 1000,
        idleEpochMs: config.attest.idleEpochMs,
        tpmTimeoutMs: config.tpm.timeoutMs,
      },
      "watchdog_shorter_than_idle_epoch",
    );
  loop.onEpoch(metrics.onEpoch);
  loop.onEpoch(notifier.onEpoch);

  let listener: Server | undefined;
  let activated = false;
  let metricsServer: MetricsServer | undefined;
  /** The stop sequence (SIGTERM, or a refusal once the loop exists): each step whatever failed before it. */
  const stopSteps = (reason: string): StopStep[] => [
    ["metrics", () => metricsServer?.close()],
    ["server", () => listener && server.close(listener)],
    ["attest", () => loop.stop()],
    // The counts of open denial windows, recorded before daemon_stop.
    ["denials", () => gate.flushDenials()],
    ...closeLineageSteps(reason),
    ["gate", () => gate.close()],
    ["disk", () => disk.stop()],
  ];

  // The first epoch before the socket opens: nothing is served without an attempt at evidence.
  // The periodic epochs and checkpoints start once the socket is bound: binding changes the
  // process umask for an instant (src/server/listen.ts), and no file is being created then.
  try {
    await loop.runEpoch();
  } catch (e) {
    // Only a bug gets here (an epoch's failures are values, a listener's are logged): exit 3
    // like any I/O failure, which systemd restarts, rather than 2, which it leaves stopped.
    throw await refuseOpened("first attestation epoch", e, stopSteps);
  }

  // The socket systemd passed (execgate.socket), else the configured path bound here.
  try {
    const opened = await openListener({
      path: config.daemon.socket,
      mode: config.daemon.socketMode,
      ...(config.daemon.socketGroup !== undefined ? { group: config.daemon.socketGroup } : {}),
      onConnection: server.onConnection,
    });
    listener = opened.server;
    activated = opened.activated;
    if (activated && opened.address !== config.daemon.socket)
      log.warn({ activated: opened.address, configured: config.daemon.socket }, "activated_socket_differs");
  } catch (e) {
    throw await refuseOpened(`socket ${config.daemon.socket}`, e, stopSteps);
  }
  loop.start();
  // A TPM that is down fails every checkpoint: logged on the change, then once a minute.
  const checkpointFailures = new RepeatedFailure();
  lineage.checkpointer.start(
    (e) => {
      const err = asExecgateError(e);
      const line = checkpointFailures.failed(err.code, monoUs() / 1000);
      if (line) log.error({ err: err.message, ...line }, "checkpoint_failed");
    },
    () => {
      const failedInRow = checkpointFailures.succeeded();
      if (failedInRow !== undefined) log.info({ failedInRow }, "checkpoint_recovered");
    },
  );
  const metricsListen =
    config.metrics.socket !== undefined
      ? { socket: config.metrics.socket, mode: config.metrics.socketMode }
      : config.metrics.port !== undefined
        ? { port: config.metrics.port }
        : undefined;
  if (metricsListen) {
    try {
      metricsServer = await startMetricsServer(metricsListen, () =>
        renderExposition(
          metrics.families({
            nowMonoUs: monoUs(),
            tokens: { ...gate.counters, issued: gate.counters.allowed },
            denials: gate.counters.denials,
            epoch: loop.current(),
            epochs: { total: loop.stats.epochs, failed: loop.stats.failed },
            lineage: {
              size: lineage.journal.size,
              checkpointSize: lineage.checkpointer.latest()?.checkpoint.size ?? 0,
              disk: disk.latest(),
            },
            connections: { open: server.connectionCount, ...server.stats },
          }),
        ),
      );
    } catch (e) {
      throw await refuseOpened("metrics listener", e, stopSteps);
    }
  }
  notifier.serve(loop.current());
  log.info(
    {
      socket: config.daemon.socket,
      activated,
      // The runtime, for operators checking that the host runs the pinned Node.
      node: process.version,
      metrics: metricsServer?.address,
      watchdogMs: watchdogUsec === undefined ? undefined : watchdogUsec / 1000,
      ready: notifier.isReady,
      roots,
      checkpoints: checkpointSigner,
      tokenSigner: config.hsm.tokenSigner,
      ...(useTpm ? { tcti: config.tpm.tcti } : {}),
      lineage: config.lineage.dir,
      // Entries at start, and how many of them came from the resume point instead of a replay.
      lineageSize: lineage.journal.recovery.size,
      lineageResumedAt: lineage.journal.recovery.resumedAt,
    },
    "daemon_started",
  );

  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });
  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      notifier.stopping();
      log.info({ reason }, "daemon_stopping");
      const code = await runStopSteps(stopSteps(reason), log);
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onTerm);
      process.off("SIGHUP", onHup);
      resolveDone(code);
    })();
    return stopping;
  };
  const onTerm = (sig: NodeJS.Signals) => void stop(sig);
  const onHup = () => {
    void (async () => {
      try {
        const next = checkQuoted(await loadPolicy(config.daemon.policy));
        await storePolicy(next);
        await lineage.journal.append(
          makeEntry("policy_loaded", time(), { policyDigest: next.digest, source: config.daemon.policy }),
        );
        policy.replaced(next, Date.now());
        // Evidence judged under the old policy is not used from now on (decide); a new epoch
        // judges the state under this one at once.
        loop.refresh();
        log.info({ digest: Buffer.from(next.digest).toString("hex") }, "policy_reloaded");
      } catch (e) {
        const err = asExecgateError(e).message;
        policy.refused(err, Date.now());
        log.error({ err }, "policy_reload_failed_keeping_old");
      }
    })();
  };
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onTerm);
  process.on("SIGHUP", onHup);
  return { socket: config.daemon.socket, done, stop };
}

/** Runs until stopped; returns the process exit code (startup refusals print one clear line). */
export async function runDaemon(configPath: string): Promise<number> {
  try {
    const d = await startDaemon(configPath);
    return await d.done;
  } catch (e) {
    if (e instanceof StartupError) {
      process.stderr.write(`execgate daemon: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}
