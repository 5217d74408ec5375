import { Worker } from "node:worker_threads";
import { ExecgateError } from "../core/errors.js";

/**
 * execFile on a worker thread. child_process.spawn blocks its calling thread until the child has
 * exec'd (libuv waits on a close-on-exec pipe so it can report exec errors synchronously): 2–10 ms
 * on the machines we measured, several times a second in a running daemon (epoch quotes,
 * checkpoint signatures). On the event loop every request in that window waits; on a worker thread
 * nobody does. One worker serves the process; it is started on first use, does not keep the
 * process alive, and is started again if it ever dies (its calls in flight then fail).
 */
export interface ExecOptions {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly maxBuffer: number;
}

/** What execFile's callback gave, with the error's fields the caller classifies. */
export interface ExecOutcome {
  readonly stdout: string;
  readonly stderr: string;
  readonly error?: {
    readonly message: string;
    readonly code?: number | string | null;
    readonly killed?: boolean;
    readonly signal?: NodeJS.Signals | null;
  };
}

const WORKER_SOURCE = `
const { execFile } = require("node:child_process");
const { parentPort } = require("node:worker_threads");
parentPort.on("message", ({ id, file, args, options }) => {
  execFile(
    file,
    args,
    { cwd: options.cwd, env: options.env, timeout: options.timeoutMs, killSignal: "SIGKILL",
      maxBuffer: options.maxBuffer, encoding: "utf8", shell: false },
    (error, stdout, stderr) => {
      const e = error
        ? { message: error.message, code: error.code, killed: error.killed, signal: error.signal }
        : undefined;
      parentPort.postMessage({ id, stdout: String(stdout), stderr: String(stderr), error: e });
    },
  );
});
`;

interface Waiter {
  readonly resolve: (o: ExecOutcome) => void;
  readonly reject: (e: unknown) => void;
}

let worker: Worker | undefined;
const waiters = new Map<number, Waiter>();
let nextId = 1;

function failAll(why: string): void {
  worker = undefined;
  for (const w of waiters.values()) w.reject(new ExecgateError("hardware_unavailable", why));
  waiters.clear();
}

function getWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.unref();
  w.on("message", (m: ExecOutcome & { id: number }) => {
    const waiter = waiters.get(m.id);
    if (!waiter) return;
    waiters.delete(m.id);
    if (waiters.size === 0) w.unref();
    waiter.resolve({ stdout: m.stdout, stderr: m.stderr, ...(m.error ? { error: m.error } : {}) });
  });
  w.on("error", (e) => failAll(`the process-spawning thread failed: ${e.message}`));
  w.on("exit", (code) => {
    if (worker === w) failAll(`the process-spawning thread exited (${code})`);
  });
  worker = w;
  return w;
}

/** Runs `file args…` (no shell) on the spawning thread; resolves with its output or failure. */
export function execOnThread(
  file: string,
  args: readonly string[],
  options: ExecOptions,
): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const w = getWorker();
    const id = nextId++;
    waiters.set(id, { resolve, reject });
    // Keep the process alive while a call is in flight, as execFile itself would.
    w.ref();
    w.postMessage({ id, file, args: [...args], options });
  });
}
