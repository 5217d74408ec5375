import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { ExecgateError } from "../core/errors.js";
import { makeDirs } from "../core/mkdirs.js";
import { TpmRunner } from "../tpm/runner.js";
import { dieWithParent, signalProcess, waitEnded } from "./pid.js";

const execFileP = promisify(execFile);

/**
 * A software TPM for tests and `execgate dev`: manufactured in its own directory with EK
 * certificates from a private local CA (swtpm_setup + swtpm_localca; nothing under /etc or
 * /var/lib is touched), served on a Unix socket inside that directory (so parallel test files
 * never collide on ports), dictionary-attack lockout disabled, and stopped by PID after an
 * orderly TPM2_Shutdown (an unclean kill counts as a DA failure at the next start).
 *
 * Every running instance is also recorded under `pidDir` (when given) so a test run's global
 * teardown can stop whatever a crashed test left behind.
 */
export interface SwtpmOptions {
  /** Directory that holds the TPM state, CA, socket and logs. Created if missing. */
  readonly dir: string;
  /** PCR banks to activate (default sha1 and sha256, as on most real TPMs). */
  readonly banks?: readonly string[];
  /** Where to record the PID of the running swtpm for a global teardown. */
  readonly pidDir?: string;
  /** Timeout for each tpm2-tools call made through `runner` (default 10 s). */
  readonly timeoutMs?: number;
}

export interface SwtpmPaths {
  readonly state: string;
  readonly socket: string;
  readonly caDir: string;
  /** swtpm_localca's root CA certificate: the trust anchor for EK certificate chains. */
  readonly rootCa: string;
  /** swtpm_localca's intermediate CA certificate, which signs the EK certificates. */
  readonly issuerCa: string;
  readonly log: string;
  readonly pidFile: string;
}

export function swtpmPaths(dir: string): SwtpmPaths {
  const caDir = join(dir, "ca");
  return {
    state: join(dir, "state"),
    socket: join(dir, "swtpm.sock"),
    caDir,
    rootCa: join(caDir, "swtpm-localca-rootca-cert.pem"),
    issuerCa: join(caDir, "issuercert.pem"),
    log: join(dir, "swtpm.log"),
    pidFile: join(dir, "swtpm.pid"),
  };
}

export class Swtpm {
  readonly paths: SwtpmPaths;
  readonly tcti: string;
  readonly runner: TpmRunner;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    private readonly options: SwtpmOptions,
    paths: SwtpmPaths,
  ) {
    this.paths = paths;
    this.tcti = `swtpm:path=${paths.socket}`;
    this.runner = new TpmRunner({ tcti: this.tcti, timeoutMs: options.timeoutMs ?? 10_000 });
  }

  /** Manufactures the TPM if `dir` holds no state yet (else resumes it), then starts it. */
  static async start(options: SwtpmOptions): Promise<Swtpm> {
    const paths = swtpmPaths(options.dir);
    if (!existsSync(join(paths.state, "tpm2-00.permall"))) await manufacture(options.dir, options.banks);
    const tpm = new Swtpm(options, paths);
    await tpm.launch();
    return tpm;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Orderly stop: TPM2_Shutdown(CLEAR), then SIGTERM (SIGKILL after 2 s). Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.running) return;
    await this.runner.run("tpm2_shutdown", ["-c"]).catch(() => undefined);
    await this.signal("SIGTERM", 2000);
  }

  /** Fault injection: kill without TPM2_Shutdown (the DA counter is off, so no lockout). */
  async kill(): Promise<void> {
    await this.signal("SIGKILL", 2000);
  }

  /** Fault injection: freeze the process so calls hang (SIGSTOP); `resume` undoes it. */
  freeze(): void {
    if (this.child?.pid) signalProcess(this.child.pid, "SIGSTOP");
  }

  resume(): void {
    if (this.child?.pid) signalProcess(this.child.pid, "SIGCONT");
  }

  /** Restart = TPM Reset: PCRs back to zero, resetCount + 1, persistent objects kept. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Starts the process again after `kill`/`stop`. */
  async launch(): Promise<void> {
    const { socket, state, log } = this.paths;
    await stopLeftover(this.paths.pidFile, state);
    // Dies with this process (kill -9 included) instead of lingering as an orphan; what escapes
    // (no setpriv, or a death before setpriv's prctl) is stopped by stopLeftover at the next start.
    const [cmd, ...args] = await dieWithParent([
      "/usr/bin/swtpm",
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${state}`,
      "--server",
      `type=unixio,path=${socket}`,
      "--ctrl",
      `type=unixio,path=${socket}.ctrl`,
      "--flags",
      "not-need-init,startup-clear",
      "--log",
      `file=${log},level=1`,
      "--pid",
      `file=${this.paths.pidFile}`,
    ]);
    const child = spawn(
      cmd!,
      args,
      // Its own process group: a terminal's Ctrl-C (or `timeout`) signals our group, and the
      // TPM must outlive the daemon's shutdown (final checkpoint signature, TPM2_Shutdown).
      { stdio: "ignore", env: {}, detached: true },
    );
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.once("error", () => undefined);
    if (child.pid !== undefined) liveChildren.add(child);
    child.once("exit", () => {
      liveChildren.delete(child);
      if (this.options.pidDir && child.pid) void removePid(this.options.pidDir, child.pid);
    });
    if (this.options.pidDir && child.pid) {
      await makeDirs(this.options.pidDir);
      await writeFile(join(this.options.pidDir, String(child.pid)), "");
    }
    await this.waitReady();
    // CI and dev only: no dictionary-attack counting, so a killed swtpm never locks the AK out.
    await this.runner.run("tpm2_dictionarylockout", [
      "--clear-lockout",
      "--setup-parameters",
      "--max-tries=32",
      "--recovery-time=0",
      "--lockout-recovery-time=0",
    ]);
  }

  private async waitReady(): Promise<void> {
    const probe = new TpmRunner({ tcti: this.tcti, timeoutMs: 2000 });
    let last: unknown;
    for (let i = 0; i < 100; i++) {
      if (!this.running) break;
      if (existsSync(this.paths.socket)) {
        try {
          await probe.run("tpm2_getrandom", ["1", "-o", "r.bin"]);
          return;
        } catch (e) {
          last = e;
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.signal("SIGKILL", 1000);
    const tail = await readFile(this.paths.log, "utf8").catch(() => "");
    throw new ExecgateError(
      "hardware_unavailable",
      `swtpm did not become ready: ${tail.slice(-500)}`,
      {},
      { cause: last },
    );
  }

  private async signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill(sig);
    const timer = new Promise<"late">((r) => setTimeout(() => r("late"), graceMs).unref());
    if ((await Promise.race([this.exited.then(() => "done" as const), timer])) === "late") {
      child.kill("SIGKILL");
      await this.exited;
    }
  }
}

/**
 * A swtpm left running on this state directory by a process that was killed outright: stop it,
 * or the new one could not bind the socket. A zombie (its new parent never reaps it) and a
 * process that ends between the look and the signal (ESRCH) count as stopped. Returns what it
 * found: "none", "stopped" (SIGTERM sufficed) or "killed" (SIGKILL after 2 s).
 */
export async function stopLeftover(
  pidFile: string,
  stateDir: string,
): Promise<"none" | "stopped" | "killed"> {
  const pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 1) return "none";
  // PIDs get reused: only a swtpm serving this very state directory is ours to stop.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.startsWith("/usr/bin/swtpm\0") || !cmdline.includes(`\0dir=${stateDir}\0`)) return "none";
  if (!signalProcess(pid, "SIGTERM") || (await waitEnded(pid, 2000))) return "stopped";
  if (!signalProcess(pid, "SIGKILL")) return "stopped";
  if (!(await waitEnded(pid, 2000)))
    throw new ExecgateError("hardware_unavailable", `leftover swtpm ${pid} on ${stateDir} survives SIGKILL`);
  return "killed";
}

/** Children of this process, killed synchronously if the process exits without stopping them. */
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of liveChildren) c.kill("SIGKILL");
});

async function removePid(pidDir: string, pid: number): Promise<void> {
  const { rm } = await import("node:fs/promises");
  await rm(join(pidDir, String(pid)), { force: true });
}

/** swtpm_setup with a private swtpm_localca configuration: RSA-2048 and ECC EKs with certificates, SRK. */
async function manufacture(dir: string, banks: readonly string[] = ["sha1", "sha256"]): Promise<void> {
  const p = swtpmPaths(dir);
  await makeDirs(p.state);
  await makeDirs(p.caDir);
  await writeFile(
    join(p.caDir, "swtpm-localca.conf"),
    [
      `statedir = ${p.caDir}`,
      `signingkey = ${join(p.caDir, "signkey.pem")}`,
      `issuercert = ${p.issuerCa}`,
      `certserial = ${join(p.caDir, "certserial")}`,
      "",
    ].join("\n"),
  );
  await writeFile(
    join(p.caDir, "swtpm-localca.options"),
    "--platform-manufacturer execgate\n--platform-version 2.1\n--platform-model swtpm-dev\n",
  );
  await writeFile(
    join(p.caDir, "swtpm_setup.conf"),
    [
      "create_certs_tool = /usr/bin/swtpm_localca",
      `create_certs_tool_config = ${join(p.caDir, "swtpm-localca.conf")}`,
      `create_certs_tool_options = ${join(p.caDir, "swtpm-localca.options")}`,
      `active_pcr_banks = ${banks.join(",")}`,
      "",
    ].join("\n"),
  );
  try {
    await execFileP(
      "swtpm_setup",
      [
        "--tpm2",
        "--tpmstate",
        p.state,
        "--config",
        join(p.caDir, "swtpm_setup.conf"),
        "--createek",
        "--create-ek-cert",
        "--create-platform-cert",
        "--create-spk",
        "--ecc",
        "--overwrite",
        "--logfile",
        join(dir, "swtpm_setup.log"),
      ],
      { timeout: 60_000, env: { PATH: "/usr/bin:/bin" } },
    );
  } catch (e) {
    const log = await readFile(join(dir, "swtpm_setup.log"), "utf8").catch(() => "");
    throw new ExecgateError(
      "hardware_unavailable",
      `swtpm_setup failed: ${log.slice(-800)}`,
      {},
      { cause: e },
    );
  }
}

/** Kills every swtpm recorded in `pidDir` (a test run's global teardown). */
export async function reapRecorded(pidDir: string): Promise<number> {
  const { readdir, rm } = await import("node:fs/promises");
  let n = 0;
  for (const name of await readdir(pidDir).catch(() => [] as string[])) {
    const pid = Number(name);
    // PIDs get reused: only kill a process that is still a swtpm.
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (
      Number.isInteger(pid) &&
      pid > 1 &&
      cmdline.startsWith("/usr/bin/swtpm") &&
      signalProcess(pid, "SIGKILL")
    )
      n++;
    await rm(join(pidDir, name), { force: true });
  }
  return n;
}
