import type { Logger } from "pino";
import { asExecgateError } from "../core/errors.js";
import type { EvidenceState } from "./evidence.js";

export interface EpochSchedulerOptions {
  /** Runs one epoch; it resolves with the epoch's state (a failed epoch is a state, not a rejection). */
  readonly run: () => Promise<EvidenceState>;
  /** Epoch period while there is activity, and while idle. */
  readonly epochMs: number;
  readonly idleEpochMs: number;
  readonly now: () => number;
  readonly monoUs: () => number;
  readonly log: Logger;
}

interface Waiter {
  /** Monotonic µs (EvidenceState.startedMonoUs). */
  readonly after: number;
  readonly resolve: (s: EvidenceState | undefined) => void;
}

/**
 * When epochs run: one at a time, at the fast period while requests arrive and the idle one
 * otherwise, at once for a refresh() or a waiter that needs an epoch started after it asked.
 */
export class EpochScheduler {
  /**
   * The epoch in progress, settled when it ends. It never rejects: an epoch's failure goes to
   * the caller of the runEpoch() that started it (the timer logs it), not to stop() or to the
   * next runEpoch(), which only wait for it to end.
   */
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private lastActivityMs = Number.NEGATIVE_INFINITY;
  private waiters: Waiter[] = [];
  /** refresh() was called at this monotonic time (µs): an epoch that started at or after it is due. */
  private refreshAfterUs = Number.NEGATIVE_INFINITY;
  /** When the last epoch that ended started (EvidenceState.startedMonoUs). */
  private lastStartedUs = Number.NEGATIVE_INFINITY;

  constructor(private readonly o: EpochSchedulerOptions) {}

  /** Starts the periodic epochs (the first runs at once). */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
  }

  /** A request arrived: keep the fast cadence. */
  touch(): void {
    const idle = this.o.now() - this.lastActivityMs > this.o.idleEpochMs;
    this.lastActivityMs = this.o.now();
    if (idle && !this.stopped && !this.running) this.schedule(0);
  }

  /** An epoch now, or right after the one running. */
  refresh(): void {
    this.refreshAfterUs = this.o.monoUs();
    if (!this.running) this.schedule(0);
  }

  /** Resolves with the first epoch that STARTED at or after `afterMonoUs`, or undefined at the timeout. */
  waitForEpochAfter(afterMonoUs: number, timeoutMs: number): Promise<EvidenceState | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(undefined);
      }, timeoutMs);
      const waiter: Waiter = {
        after: afterMonoUs,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      this.waiters.push(waiter);
      if (!this.running) this.schedule(0);
    });
  }

  /** Runs one epoch now (or waits for the one in progress and then runs another). */
  async runEpoch(): Promise<EvidenceState> {
    while (this.running) await this.running;
    const p = this.o.run().then((state) => {
      this.ended(state);
      return state;
    });
    const ended = () => {
      this.running = undefined;
    };
    this.running = p.then(ended, ended);
    await this.running;
    return p; // this caller's to handle
  }

  /** The waiters an epoch satisfies hear of it. */
  private ended(state: EvidenceState): void {
    this.lastStartedUs = state.startedMonoUs;
    const ready = this.waiters.filter((w) => state.startedMonoUs >= w.after);
    this.waiters = this.waiters.filter((w) => state.startedMonoUs < w.after);
    for (const w of ready) w.resolve(state);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runEpoch().then(
        () => this.afterEpoch(),
        (e: unknown) => {
          this.o.log.error({ err: asExecgateError(e).message }, "epoch_crashed");
          this.afterEpoch();
        },
      );
    }, delayMs);
    this.timer.unref?.();
  }

  private afterEpoch(): void {
    const started = this.lastStartedUs;
    if (started < this.refreshAfterUs || this.waiters.some((w) => started < w.after)) {
      this.schedule(0);
      return;
    }
    const active = this.o.now() - this.lastActivityMs <= this.o.idleEpochMs;
    this.schedule(active ? this.o.epochMs : this.o.idleEpochMs);
  }
}
