import type { Logger } from "pino";
import { DaemonMetrics } from "../src/metrics/daemon-metrics.js";
import { buildGate } from "./start/gate.js";
import { StartupError } from "./start/refusal.js";
import { reloadPolicy } from "./start/reload.js";
import { type Serving, serve } from "./start/serve.js";
import { readSettings, type Settings } from "./start/settings.js";
import { openStore, type Store } from "./start/store.js";
import { openTrustRoots, type TrustRoots } from "./start/trust-roots.js";
import { runStopSteps } from "./stop.js";

export { StartupError } from "./start/refusal.js";

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

/**
 * The stages in order, each refusing to start on its own failure and undoing what the ones
 * before it opened: settings → trust roots (TPM keys, HSM) → store (lineage, blobs, start
 * entries) → gate (attestation loop, gate, router) → serve (first epoch, socket, metrics).
 */
export async function startDaemon(configPath: string, opts: { log?: Logger } = {}): Promise<RunningDaemon> {
  const settings = await readSettings(configPath, opts.log);
  const metrics = new DaemonMetrics(Date.now());
  const roots = await openTrustRoots(settings.config, metrics);
  const store = await openStore(settings, roots);
  const built = buildGate(settings, roots, store);
  const serving = await serve(settings, store, built, metrics);
  logStarted(settings, roots, store, serving);
  return running(settings, store, serving, () => built.loop.refresh());
}

function logStarted(s: Settings, roots: TrustRoots, store: Store, serving: Serving): void {
  const { config, watchdogUsec } = s;
  const recovery = store.lineage.recovery;
  s.log.info(
    {
      socket: config.daemon.socket,
      activated: serving.activated,
      // The runtime, for operators checking that the host runs the pinned Node.
      node: process.version,
      metrics: serving.metricsAddress,
      watchdogMs: watchdogUsec === undefined ? undefined : watchdogUsec / 1000,
      ready: serving.notifier.isReady,
      roots: roots.roots,
      checkpoints: roots.checkpointSigner,
      tokenSigner: config.hsm.tokenSigner,
      ...(roots.useTpm ? { tcti: config.tpm.tcti } : {}),
      lineage: config.lineage.dir,
      // Entries at start, and how many of them came from the resume point instead of a replay.
      lineageSize: recovery.size,
      lineageResumedAt: recovery.resumedAt,
    },
    "daemon_started",
  );
}

/** The running daemon: SIGTERM/SIGINT stop it (once), SIGHUP reloads the policy. */
function running(s: Settings, store: Store, serving: Serving, refresh: () => void): RunningDaemon {
  const { config, log } = s;
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });
  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      serving.notifier.stopping();
      log.info({ reason }, "daemon_stopping");
      const code = await runStopSteps(serving.stopSteps(reason), log);
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onTerm);
      process.off("SIGHUP", onHup);
      resolveDone(code);
    })();
    return stopping;
  };
  const onTerm = (sig: NodeJS.Signals) => void stop(sig);
  const onHup = () =>
    void reloadPolicy({
      path: config.daemon.policy,
      holder: s.policy,
      check: s.checkQuoted,
      storePolicy: store.storePolicy,
      lineage: store.lineage,
      refresh,
      log,
    });
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
