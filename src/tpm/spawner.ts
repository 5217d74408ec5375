import { type ChildProcess, spawn } from "node:child_process";
import { ExecgateError } from "../core/errors.js";

/**
 * execFile in a small helper process. Spawning copies the spawning process's page tables (libuv
 * forks): about 2.4 ms for a 150 MiB daemon and 22 ms at 550 MiB, measured on the 2-core VM,
 * several times a second in a running daemon (epoch quotes, checkpoint signatures). On the event
 * loop every request in that window waits. On a worker thread it still does: the fork holds the
 * address space's lock, and afterwards every page the event loop writes faults once to undo the
 * copy-on-write marking (p99 of a 1 ms tick went from 0.2–0.9 ms to 4–5.5 ms with three spawns
 * a second from a worker; from a helper process it stayed at 0.15–0.23 ms).
 *
 * So one helper process (node, started on first use, about 40 MiB) spawns the tools, and its own
 * small address space is what each fork copies. It talks JSON over an IPC channel, ignores the
 * signals a terminal or systemd sends the whole group (the daemon decides when to stop) and exits
 * when the channel closes, killing any tool it still runs. A helper that dies fails the calls in
 * flight (hardware_unavailable) and is started again by the next call. A call the helper does not
 * answer within its timeout plus ANSWER_GRACE_MS fails the same way.
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

const HELPER_SOURCE = `
const { execFile } = require("node:child_process");
const running = new Set();
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(s, () => {});
process.on("disconnect", () => {
  for (const c of running) c.kill("SIGKILL");
  process.exit(0);
});
process.on("message", ({ id, file, args, options }) => {
  const child = execFile(
    file,
    args,
    { cwd: options.cwd, env: options.env, timeout: options.timeoutMs, killSignal: "SIGKILL",
      maxBuffer: options.maxBuffer, encoding: "utf8", shell: false },
    (error, stdout, stderr) => {
      running.delete(child);
      const e = error
        ? { message: error.message, code: error.code, killed: error.killed, signal: error.signal }
        : undefined;
      if (process.connected) process.send({ id, stdout: String(stdout), stderr: String(stderr), error: e });
    },
  );
  running.add(child);
});
`;

/** How long past a call's own timeout the helper may take to answer before the call fails. */
const ANSWER_GRACE_MS = 5_000;

interface Waiter {
  readonly resolve: (o: ExecOutcome) => void;
  readonly reject: (e: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

let helper: ChildProcess | undefined;
const waiters = new Map<number, Waiter>();
let nextId = 1;

function settle(id: number): Waiter | undefined {
  const w = waiters.get(id);
  if (!w) return undefined;
  waiters.delete(id);
  clearTimeout(w.timer);
  if (waiters.size === 0 && helper) hold(helper, false);
  return w;
}

function failAll(why: string): void {
  helper = undefined;
  for (const id of [...waiters.keys()]) settle(id)?.reject(new ExecgateError("hardware_unavailable", why));
}

/** Keeps the process alive while calls are in flight, as execFile itself would; not otherwise. */
function hold(c: ChildProcess, on: boolean): void {
  if (on) {
    c.ref();
    c.channel?.ref();
  } else {
    c.unref();
    c.channel?.unref();
  }
}

function getHelper(): ChildProcess {
  if (helper) return helper;
  const c = spawn(process.execPath, ["-e", HELPER_SOURCE], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: {},
  });
  c.on("message", (m: ExecOutcome & { id: number }) => {
    settle(m.id)?.resolve({ stdout: m.stdout, stderr: m.stderr, ...(m.error ? { error: m.error } : {}) });
  });
  c.on("error", (e) => {
    if (helper === c) failAll(`the process-spawning helper failed: ${e.message}`);
  });
  c.on("exit", (code, signal) => {
    if (helper === c) failAll(`the process-spawning helper exited (${signal ?? code})`);
  });
  hold(c, false);
  helper = c;
  return c;
}

/** Runs `file args…` (no shell) from the helper process; resolves with its output or failure. */
export function execOutside(
  file: string,
  args: readonly string[],
  options: ExecOptions,
): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const c = getHelper();
    const id = nextId++;
    const timer = setTimeout(() => {
      settle(id)?.reject(
        new ExecgateError("hardware_unavailable", `the process-spawning helper did not answer for ${file}`),
      );
    }, options.timeoutMs + ANSWER_GRACE_MS);
    waiters.set(id, { resolve, reject, timer });
    hold(c, true);
    c.send({ id, file, args: [...args], options }, (e) => {
      if (e)
        settle(id)?.reject(
          new ExecgateError("hardware_unavailable", `the process-spawning helper: ${e.message}`),
        );
    });
  });
}

/** The helper's pid while it runs (tests). */
export function helperPid(): number | undefined {
  return helper?.pid;
}
