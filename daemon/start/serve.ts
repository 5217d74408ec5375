import type { Server } from "node:net";
import type { Logger } from "pino";
import { asExecgateError } from "../../src/core/errors.js";
import { RepeatedFailure } from "../../src/core/repeated-failure.js";
import type { Lineage } from "../../src/lineage/lineage.js";
import type { DaemonMetrics } from "../../src/metrics/daemon-metrics.js";
import { renderExposition } from "../../src/metrics/exposition.js";
import { type MetricsServer, startMetricsServer } from "../../src/metrics/server.js";
import { sdNotify } from "../../src/native/index.js";
import { openListener, ServiceNotifier } from "../../src/server/activation.js";
import { GateServer, type RequestHandler } from "../../src/server/server.js";
import type { StopStep } from "../stop.js";
import { monoUs } from "./clock.js";
import type { BuiltGate } from "./gate.js";
import { refuseOpened } from "./refusal.js";
import type { Settings } from "./settings.js";
import type { Store } from "./store.js";

/** The daemon serving: what `daemon_started` reports and what its stop runs. */
export interface Serving {
  readonly notifier: ServiceNotifier;
  readonly activated: boolean;
  readonly metricsAddress: string | undefined;
  /** The stop sequence (SIGTERM, or a refusal once the loop exists): each step whatever failed before it. */
  stopSteps(reason: string): StopStep[];
}

/**
 * The first epoch, then the socket, the periodic epochs and checkpoints, the metrics listener
 * and READY. A refusal here stops what was started and records daemon_stop.
 */
export async function serve(
  s: Settings,
  store: Store,
  built: BuiltGate,
  metrics: DaemonMetrics,
): Promise<Serving> {
  const { config, log } = s;
  const { loop, gate } = built;
  const server = gateServer(s, built.handler, metrics);
  const notifier = serviceNotifier(s);
  loop.onEpoch(metrics.onEpoch);
  loop.onEpoch(notifier.onEpoch);
  let listener: Server | undefined;
  let activated = false;
  let metricsServer: MetricsServer | undefined;
  const stopSteps = (reason: string): StopStep[] => [
    ["metrics", () => metricsServer?.close()],
    ["server", () => listener && server.close(listener)],
    ["attest", () => loop.stop()],
    // The counts of open denial windows, recorded before daemon_stop.
    ["denials", () => gate.flushDenials()],
    ...store.closeSteps(reason),
    ["gate", () => gate.close()],
    ["disk", () => store.disk.stop()],
  ];

  // The first epoch before the socket opens: nothing is served without an attempt at evidence.
  // The periodic epochs and checkpoints start once the socket is bound: binding changes the
  // process umask for an instant (src/server/listen.ts), and no file is being created then.
  try {
    await loop.runEpoch();
  } catch (e) {
    // Only a bug gets here (an epoch's failures are values, a listener's are logged): exit 3
    // like any I/O failure, which systemd restarts, rather than 2, which it leaves stopped.
    throw await refuseOpened("first attestation epoch", e, stopSteps, log);
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
    throw await refuseOpened(`socket ${config.daemon.socket}`, e, stopSteps, log);
  }
  loop.start();
  startCheckpoints(store.lineage, log);
  try {
    metricsServer = await metricsListener(s, store, built, server, metrics);
  } catch (e) {
    throw await refuseOpened("metrics listener", e, stopSteps, log);
  }
  notifier.serve(loop.current());
  return { notifier, activated, metricsAddress: metricsServer?.address, stopSteps };
}

function gateServer(s: Settings, handler: RequestHandler, metrics: DaemonMetrics): GateServer {
  const limits = s.config.limits;
  return new GateServer(
    handler,
    {
      maxFrameBytes: limits.maxFrameBytes,
      maxConnections: limits.maxConnections,
      maxConnectionsPerUid: limits.maxConnectionsPerUid,
      readTimeoutMs: limits.readTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
      requestsPerSecondPerUid: limits.requestsPerSecondPerUid,
      burstPerUid: limits.burstPerUid,
    },
    s.log.child({ component: "server" }),
    () => performance.now(),
    (op, seconds) => metrics.requestDuration.observe(op, seconds),
  );
}

/**
 * systemd: READY=1 with the first verified epoch, STATUS= every epoch, WATCHDOG=1 only from
 * healthy completed epochs (src/server/activation.ts). Registered before the first epoch.
 */
function serviceNotifier(s: Settings): ServiceNotifier {
  const { watchdogUsec, config, log } = s;
  if (watchdogUsec !== undefined && watchdogUsec / 1000 <= config.attest.idleEpochMs + config.tpm.timeoutMs)
    log.warn(
      {
        watchdogMs: watchdogUsec / 1000,
        idleEpochMs: config.attest.idleEpochMs,
        tpmTimeoutMs: config.tpm.timeoutMs,
      },
      "watchdog_shorter_than_idle_epoch",
    );
  return new ServiceNotifier({
    send: (m) => sdNotify(m),
    ...(watchdogUsec !== undefined ? { watchdogUsec } : {}),
    now: Date.now,
    onError: (e) => log.warn({ err: asExecgateError(e).message }, "sd_notify_failed"),
  });
}

/** Periodic checkpoints; a TPM that is down fails every one: logged on the change, then once a minute. */
function startCheckpoints(lineage: Lineage, log: Logger): void {
  const failures = new RepeatedFailure();
  lineage.startCheckpoints(
    (e) => {
      const err = asExecgateError(e);
      const line = failures.failed(err.code, monoUs() / 1000);
      if (line) log.error({ err: err.message, ...line }, "checkpoint_failed");
    },
    () => {
      const failedInRow = failures.succeeded();
      if (failedInRow !== undefined) log.info({ failedInRow }, "checkpoint_recovered");
    },
  );
}

/** The metrics listener when metrics.socket or metrics.port is configured. */
async function metricsListener(
  s: Settings,
  store: Store,
  { loop, gate }: BuiltGate,
  server: GateServer,
  metrics: DaemonMetrics,
): Promise<MetricsServer | undefined> {
  const m = s.config.metrics;
  const listen =
    m.socket !== undefined
      ? { socket: m.socket, mode: m.socketMode }
      : m.port !== undefined
        ? { port: m.port }
        : undefined;
  if (!listen) return undefined;
  return startMetricsServer(listen, () =>
    renderExposition(
      metrics.families({
        nowMonoUs: monoUs(),
        tokens: { ...gate.counters, issued: gate.counters.allowed },
        denials: gate.counters.denials,
        epoch: loop.current(),
        epochs: { total: loop.stats.epochs, failed: loop.stats.failed },
        lineage: {
          size: store.lineage.size,
          checkpointSize: store.lineage.latestCheckpoint()?.checkpoint.size ?? 0,
          disk: store.disk.latest(),
        },
        connections: { open: server.connectionCount, ...server.stats },
      }),
    ),
  );
}
