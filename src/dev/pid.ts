import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { ExecgateError } from "../core/errors.js";

/*
 * Processes named by a PID we did not just spawn (a pid file left by a killed run): the process
 * may still run, be a zombie its new parent never reaps (an init that does not wait, as in some
 * containers and VMs), or be gone, even between one check and the next signal.
 */

/** True when `pid` has ended: no /proc entry, or a zombie (Z) or dead (X) task not yet reaped. */
export async function processEnded(pid: number): Promise<boolean> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return true;
    throw new ExecgateError("io_error", `read /proc/${pid}/stat: ${code ?? String(e)}`);
  }
  // proc(5): the state follows the command name, which may itself hold spaces and ")".
  const state = stat.charAt(stat.lastIndexOf(")") + 2);
  return state === "Z" || state === "X" || state === "";
}

/** kill(2), where ESRCH (the process ended after it was looked at) means "already gone": false. */
export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return false;
    throw new ExecgateError("io_error", `kill ${signal} ${pid}: ${code ?? String(e)}`);
  }
}

/** Polls until `pid` has ended; false if it still runs after `ms`. */
export async function waitEnded(pid: number, ms: number, stepMs = 25): Promise<boolean> {
  for (let waited = 0; ; waited += stepMs) {
    if (await processEnded(pid)) return true;
    if (waited >= ms) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** util-linux setpriv (Debian: package util-linux, Essential); --pdeathsig since util-linux 2.33. */
export const SETPRIV = "/usr/bin/setpriv";

let pdeathsig: Promise<boolean> | undefined;

/** Whether setpriv here can set a parent-death signal (probed once per process). */
export function pdeathsigAvailable(): Promise<boolean> {
  pdeathsig ??= new Promise((resolve) =>
    execFile(SETPRIV, ["--pdeathsig", "KILL", "--", "/bin/true"], { env: {}, timeout: 5000 }, (e) =>
      resolve(e === null),
    ),
  );
  return pdeathsig;
}

/**
 * `argv` run so that the kernel sends it SIGKILL when its parent dies (PR_SET_PDEATHSIG, kept
 * across execve), or `argv` unchanged when setpriv cannot. The "parent" is the thread that forked:
 * Node forks from the JS thread that calls spawn (main thread, or a worker that then owns it).
 */
export async function dieWithParent(argv: readonly string[]): Promise<string[]> {
  return (await pdeathsigAvailable()) ? [SETPRIV, "--pdeathsig", "KILL", "--", ...argv] : [...argv];
}
