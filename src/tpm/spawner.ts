import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { ExecgateError } from "../core/errors.js";
import { type ProcStat, parseProcStat } from "../peer/proc-parse.js";

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
 * when the channel closes, killing any tool it still runs.
 *
 * A TPM serves one command at a time (swtpm one connection), so a call is answered only once its
 * tool is gone: at its timeout the helper kills the tool's process group (what the tool started
 * too) and answers when the tool has exited. A helper that dies or does not answer within the
 * timeout plus ANSWER_GRACE_MS is abandoned: it and its tools are killed, the calls in flight fail
 * (hardware_unavailable), and the next call starts a new helper — only once those tools are gone,
 * or it fails the same way after waiting its own timeout for them. Killing needs no fork, so none
 * of this spawns from the daemon except a new helper.
 */
export interface ExecOptions {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly maxBuffer: number;
  /** How long past timeoutMs the helper may take to answer (default ANSWER_GRACE_MS; tests shorten it). */
  readonly answerGraceMs?: number;
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

/**
 * The helper. Each tool leads its own process group (detached: a new session, no terminal), so a
 * kill reaches what the tool started: a child of a killed tool kept its pipes open and ran on.
 * execFile does not pass `detached` on, hence spawn and the output collected here. The helper
 * sends `{id, pid}` once a tool runs (the daemon kills it if the helper stops answering) and
 * `{id, stdout, stderr, error}` once it has exited.
 */
export const HELPER_TITLE = "execgate-tpm-helper";
const HELPER_SOURCE = `
process.title = "${HELPER_TITLE}";
const { spawn } = require("node:child_process");
const running = new Set();
const killGroup = (child) => {
  try { process.kill(-child.pid, "SIGKILL"); } catch {}
};
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(s, () => {});
process.on("disconnect", () => {
  for (const c of running) killGroup(c);
  process.exit(0);
});
process.on("message", ({ id, file, args, options }) => {
  const out = { stdout: [], stderr: [] };
  let bytes = 0;
  let killed = false;
  let overflow = false;
  let answered = false;
  const answer = (error) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    running.delete(child);
    const text = (k) => Buffer.concat(out[k]).toString("utf8");
    if (process.connected) process.send({ id, stdout: text("stdout"), stderr: text("stderr"), error });
  };
  const child = spawn(file, args, {
    cwd: options.cwd, env: options.env, detached: true, shell: false, stdio: ["ignore", "pipe", "pipe"],
  });
  // Like execFile's kill: the pipes are let go, so the answer waits for the tool's exit, not for
  // a process that escaped the group and holds them.
  const kill = () => {
    killed = true;
    killGroup(child);
    child.stdout.destroy();
    child.stderr.destroy();
  };
  const timer = setTimeout(kill, options.timeoutMs);
  for (const k of ["stdout", "stderr"]) {
    child[k].on("data", (chunk) => {
      out[k].push(chunk);
      bytes += chunk.length;
      if (bytes > options.maxBuffer && !overflow) {
        overflow = true;
        kill();
      }
    });
  }
  child.on("error", (e) => {
    if (child.pid === undefined) answer({ message: e.message, code: e.code });
  });
  child.on("close", (code, signal) => {
    if (overflow) answer({ message: "maxBuffer exceeded", code: "ERR_CHILD_PROCESS_STDIO_MAXBUFFER", killed, signal });
    else if (code !== 0 || signal) answer({ message: "Command failed: " + file, code, killed, signal });
    else answer(undefined);
  });
  if (child.pid !== undefined) {
    running.add(child);
    if (process.connected) process.send({ id, pid: child.pid });
  }
});
`;

/** How long past a call's own timeout the helper may take to answer before it is abandoned. */
const ANSWER_GRACE_MS = 5_000;
/** How often a call waiting for an abandoned helper's tools to be gone looks again. */
const LEFTOVER_POLL_MS = 20;

interface Waiter {
  readonly resolve: (o: ExecOutcome) => void;
  readonly reject: (e: unknown) => void;
  readonly timer: NodeJS.Timeout;
  /** The tool's pid, once the helper said it runs. */
  pid?: number;
}

type HelperMessage = { id: number; pid: number } | (ExecOutcome & { id: number });

let helper: ChildProcess | undefined;
const waiters = new Map<number, Waiter>();
let nextId = 1;
/** Tools of abandoned helpers that may still run: pid → start time (a reused pid is not them). */
const leftovers = new Map<number, number>();

function settle(id: number): Waiter | undefined {
  const w = waiters.get(id);
  if (!w) return undefined;
  waiters.delete(id);
  clearTimeout(w.timer);
  if (waiters.size === 0 && helper) hold(helper, false);
  return w;
}

/**
 * The helper `c` died or stopped answering. Its tools may still run and hold the TPM: each is
 * killed with its process group and remembered until it is gone. Then `c` is killed (it may be
 * alive but stuck) and every call in flight fails; the next call starts a new helper.
 */
function abandon(c: ChildProcess, why: string): void {
  if (helper !== c) return;
  helper = undefined;
  for (const w of waiters.values()) if (w.pid !== undefined) leaveBehind(w.pid);
  c.kill("SIGKILL");
  for (const id of [...waiters.keys()]) settle(id)?.reject(new ExecgateError("hardware_unavailable", why));
}

function leaveBehind(pid: number): void {
  const start = startTime(pid);
  if (start === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // The group is gone already.
  }
  leftovers.set(pid, start);
}

/**
 * A process's start time (proc(5) field 22), or undefined once it is gone: absent, or a zombie
 * (its files, so its TPM connection, are closed; an orphan waits for whoever adopted it to reap it).
 */
function startTime(pid: number): number | undefined {
  let stat: ProcStat;
  try {
    stat = parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
  return stat.state === "Z" || stat.state === "X" ? undefined : stat.startTime;
}

/** Waits up to `waitMs` for the tools of abandoned helpers to be gone: a new command must not overlap theirs. */
async function leftoversGone(waitMs: number): Promise<void> {
  const deadline = performance.now() + waitMs;
  for (;;) {
    for (const [pid, start] of leftovers) if (startTime(pid) !== start) leftovers.delete(pid);
    if (leftovers.size === 0) return;
    if (performance.now() >= deadline)
      throw new ExecgateError(
        "hardware_unavailable",
        `a TPM tool that did not finish in time still runs (pid ${[...leftovers.keys()].join(", ")})`,
      );
    await sleep(LEFTOVER_POLL_MS);
  }
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
  c.on("message", (m: HelperMessage) => {
    if ("pid" in m) {
      const w = waiters.get(m.id);
      if (w) w.pid = m.pid;
      return;
    }
    settle(m.id)?.resolve({ stdout: m.stdout, stderr: m.stderr, ...(m.error ? { error: m.error } : {}) });
  });
  c.on("error", (e) => abandon(c, `the process-spawning helper failed: ${e.message}`));
  c.on("exit", (code, signal) => abandon(c, `the process-spawning helper exited (${signal ?? code})`));
  hold(c, false);
  helper = c;
  return c;
}

/**
 * Runs `file args…` (no shell) from the helper process; resolves with its output or failure once
 * the tool is gone.
 */
export async function execOutside(
  file: string,
  args: readonly string[],
  options: ExecOptions,
): Promise<ExecOutcome> {
  if (leftovers.size > 0) await leftoversGone(options.timeoutMs);
  return new Promise((resolve, reject) => {
    const c = getHelper();
    const id = nextId++;
    const timer = setTimeout(
      () => abandon(c, `the process-spawning helper did not answer for ${file}`),
      options.timeoutMs + (options.answerGraceMs ?? ANSWER_GRACE_MS),
    );
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
