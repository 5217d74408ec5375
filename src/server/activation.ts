import { fstatSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { type EvidenceState, epochKeepsWatchdog } from "../attest/evidence.js";
import { ExecgateError } from "../core/errors.js";
import { listenUnix, resolveGroup } from "./listen.js";

/*
 * The daemon as a systemd service: socket activation (below) and sd_notify messages
 * (ServiceNotifier). Both work the same without systemd: no LISTEN_FDS means the daemon binds
 * its socket itself, no NOTIFY_SOCKET means the messages are not sent.
 */

/**
 * systemd socket activation (sd_listen_fds(3)): the descriptors systemd passed start at fd 3;
 * LISTEN_PID names the process they are meant for (a child that inherited the environment
 * must not take them), LISTEN_FDS how many there are. The parsing is pure; `openListener`
 * adopts the activated socket or, when not activated, binds the configured path itself.
 */

/** SD_LISTEN_FDS_START. */
export const LISTEN_FDS_START = 3;
/** More descriptors than any execgate unit passes: a larger LISTEN_FDS is refused, not trusted. */
export const MAX_LISTEN_FDS = 16;

export interface ListenFds {
  readonly fds: readonly number[];
  /** LISTEN_FDNAMES (FileDescriptorName=), one per descriptor; "unknown" where unnamed. */
  readonly names: readonly string[];
}

const DECIMAL = /^[0-9]{1,10}$/;

/**
 * The activated descriptors for process `pid`, or undefined when the process was not socket
 * activated (no LISTEN_PID, or one meant for another process). Malformed values are refused.
 */
export function listenFdsFromEnv(env: NodeJS.ProcessEnv, pid: number): ListenFds | undefined {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  if (listenPid === undefined || listenPid === "") return undefined;
  if (!DECIMAL.test(listenPid))
    throw new ExecgateError("config_invalid", `LISTEN_PID '${listenPid}' is not a process id`);
  if (Number(listenPid) !== pid) return undefined;
  if (listenFds === undefined || !DECIMAL.test(listenFds))
    throw new ExecgateError("config_invalid", `LISTEN_FDS '${listenFds ?? ""}' is not a count`);
  const n = Number(listenFds);
  if (n > MAX_LISTEN_FDS)
    throw new ExecgateError("config_invalid", `LISTEN_FDS ${n} is more than ${MAX_LISTEN_FDS}`);
  const fds = Array.from({ length: n }, (_, i) => LISTEN_FDS_START + i);
  const given = env.LISTEN_FDNAMES ? env.LISTEN_FDNAMES.split(":") : [];
  return { fds, names: fds.map((_, i) => given[i] || "unknown") };
}

/** sd_listen_fds(unset_environment=1): children (tpm2-tools) must not see these variables. */
export function unsetActivationEnv(env: NodeJS.ProcessEnv): void {
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
}

export interface OpenedListener {
  readonly server: Server;
  /** True when the socket came from systemd (LISTEN_FDS), false when the daemon bound it. */
  readonly activated: boolean;
  /** The socket's path as the kernel reports it (for an activated socket), or the bound path. */
  readonly address: string;
}

/**
 * Adopts the one socket systemd passed, or — not activated — binds `path` safely (listenUnix:
 * never unlinks anything that is not a stale socket). An activated descriptor that is not a
 * socket, or more than one descriptor, is refused: the daemon does not guess which to serve.
 */
export async function openListener(opts: {
  path: string;
  mode: number;
  /** Group owning a socket the daemon binds (name or gid); an activated socket has systemd's SocketGroup=. */
  group?: string;
  onConnection: (s: Socket) => void;
  env?: NodeJS.ProcessEnv;
  pid?: number;
}): Promise<OpenedListener> {
  const env = opts.env ?? process.env;
  const activation = listenFdsFromEnv(env, opts.pid ?? process.pid);
  unsetActivationEnv(env);
  if (!activation || activation.fds.length === 0) {
    const gid = opts.group === undefined ? undefined : await resolveGroup(opts.group);
    const server = await listenUnix(opts.path, {
      mode: opts.mode,
      ...(gid !== undefined ? { gid } : {}),
      onConnection: opts.onConnection,
    });
    return { server, activated: false, address: opts.path };
  }
  if (activation.fds.length !== 1)
    throw new ExecgateError(
      "config_invalid",
      `socket activation passed ${activation.fds.length} descriptors; execgate.socket must pass exactly one`,
    );
  const fd = activation.fds[0]!;
  let isSocket: boolean;
  try {
    isSocket = fstatSync(fd).isSocket();
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `activated descriptor ${fd}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
  if (!isSocket) throw new ExecgateError("config_invalid", `activated descriptor ${fd} is not a socket`);
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: false }, opts.onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) =>
      reject(new ExecgateError("io_error", `cannot serve activated descriptor ${fd}: ${e.message}`)),
    );
    server.listen({ fd }, () => resolve());
  });
  const addr = server.address();
  return { server, activated: true, address: typeof addr === "string" ? addr : `fd:${fd}` };
}

/**
 * The watchdog interval systemd expects pings at (sd_watchdog_enabled(3)): WATCHDOG_USEC in
 * microseconds, for this process when WATCHDOG_PID is unset or names it. Undefined: no watchdog.
 */
export function watchdogUsecFromEnv(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || usec === "") return undefined;
  const wpid = env.WATCHDOG_PID;
  if (wpid !== undefined && wpid !== "" && wpid !== String(pid)) return undefined;
  if (!/^[0-9]{1,16}$/.test(usec) || Number(usec) === 0)
    throw new ExecgateError(
      "config_invalid",
      `WATCHDOG_USEC '${usec}' is not a positive number of microseconds`,
    );
  return Number(usec);
}

export interface ServiceNotifierOptions {
  /** Sends one sd_notify datagram (sdNotify); may throw. */
  readonly send: (message: string) => boolean;
  /** WATCHDOG_USEC, when systemd runs a watchdog for the service. */
  readonly watchdogUsec?: number;
  readonly now: () => number;
  /** Where a failed send is reported (it never stops the loop). */
  readonly onError: (e: unknown) => void;
}

/**
 * sd_notify driven by the attestation loop, one datagram per epoch:
 *   READY=1     with the first verified epoch once the socket is open (serve()); never before:
 *               nothing is served on no evidence;
 *   STATUS=…    the epoch, its outcome and the age of the newest verified evidence;
 *   WATCHDOG=1  at most every WATCHDOG_USEC/2, and only from a completed, healthy epoch — never
 *               from a timer, so a stuck TPM stops the pings and systemd restarts the service.
 */
export class ServiceNotifier {
  private ready = false;
  private serving = false;
  private lastPingMs = Number.NEGATIVE_INFINITY;
  private lastVerifiedAtMs: number | undefined;
  /** Counters for tests and status. */
  readonly sent = { ready: 0, status: 0, watchdog: 0 };

  constructor(private readonly o: ServiceNotifierOptions) {}

  get isReady(): boolean {
    return this.ready;
  }

  /** The message for one epoch (pure apart from the notifier's own state). */
  messageFor(state: EvidenceState): string {
    const now = this.o.now();
    if (state.integrity.ok) this.lastVerifiedAtMs = state.verifiedAtMs;
    const lines: string[] = [];
    if (!this.ready && this.serving && state.integrity.ok) {
      this.ready = true;
      lines.push("READY=1");
      this.sent.ready++;
    }
    const outcome = state.integrity.ok ? "verified" : `failed: ${state.integrity.reason}`;
    const age =
      this.lastVerifiedAtMs === undefined
        ? "no verified evidence yet"
        : `evidence ${Math.max(0, now - this.lastVerifiedAtMs)} ms old`;
    lines.push(`STATUS=epoch ${state.epochSeq} ${outcome}; ${age}`);
    this.sent.status++;
    if (this.o.watchdogUsec !== undefined && epochKeepsWatchdog(state)) {
      if (now - this.lastPingMs >= this.o.watchdogUsec / 2000) {
        this.lastPingMs = now;
        lines.push("WATCHDOG=1");
        this.sent.watchdog++;
      }
    }
    return lines.join("\n");
  }

  /**
   * The socket is open: from now on a verified epoch may announce READY=1 (before, a client
   * ordered After=execgate.service could find no socket). Sends the current epoch's message.
   */
  serve(current: EvidenceState | undefined): void {
    this.serving = true;
    if (current) this.onEpoch(current);
  }

  /** The loop's onEpoch listener: never throws (a lost datagram must not break an epoch). */
  readonly onEpoch = (state: EvidenceState): void => {
    this.send(this.messageFor(state));
  };

  stopping(): void {
    this.send("STOPPING=1\nSTATUS=stopping");
  }

  private send(message: string): void {
    try {
      this.o.send(message);
    } catch (e) {
      this.o.onError(e);
    }
  }
}
