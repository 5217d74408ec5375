import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { devConfigToml, devPolicyToml } from "../../src/dev/files.js";
import { dieWithParent } from "../../src/dev/pid.js";
import { Swtpm } from "../../src/dev/swtpm.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { enroll } from "../../src/tpm/enroll.js";
import { DEFAULT_PCR_SELECTION, pcrRead } from "../../src/tpm/ops/pcr.js";

/** The built CLI beside this file (dist/scripts/chaos/ → dist/daemon/cli.js). */
export const CLI = fileURLToPath(new URL("../../daemon/cli.js", import.meta.url));

/** Only the end of a run's stderr is kept: enough for a failure message, bounded over many runs. */
const STDERR_KEEP = 64 * 1024;

/**
 * The host under test: a swtpm this process owns (it outlives every daemon crash, as a real TPM
 * would), the dev policy and config with the rate limits lifted (denials are not what is tested),
 * and the daemon as a real process that can be started, killed with SIGKILL and stopped.
 */
export class ChaosHost {
  readonly socket: string;
  readonly config: string;
  /** swtpm_localca's root and issuer: `audit verify --trust`. */
  readonly trust: string;
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private killing = false;
  private err = "";
  /** Set when a daemon ended without being told to (a finding, not a crash we injected). */
  unexpectedExit: string | undefined;

  private constructor(
    readonly dir: string,
    readonly tpm: Swtpm,
  ) {
    this.socket = join(dir, "execgate.sock");
    this.config = join(dir, "execgate.toml");
    this.trust = join(dir, "ek-ca.pem");
  }

  static async create(dir: string): Promise<ChaosHost> {
    const tpm = await Swtpm.start({ dir: join(dir, "tpm") });
    const h = new ChaosHost(dir, tpm);
    try {
      await enroll(tpm.runner);
      const pcrs = pcrHexFromTpm(await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION));
      const policy = join(dir, "policy.toml");
      await writeFile(
        policy,
        devPolicyToml({ uid: process.getuid?.() ?? 0, pcrs: pcrs as Record<string, Record<string, string>> }),
      );
      const base = devConfigToml({ socket: h.socket, stateDir: join(dir, "state"), tcti: tpm.tcti, policy });
      await writeFile(
        h.config,
        `${base}\n[limits]\nrequests_per_second_per_uid = 1000000\nburst_per_uid = 1000000\n`,
      );
      const pems = [await readFile(tpm.paths.rootCa, "utf8"), await readFile(tpm.paths.issuerCa, "utf8")];
      await writeFile(h.trust, pems.map((t) => (t.endsWith("\n") ? t : `${t}\n`)).join(""));
    } catch (e) {
      await tpm.stop();
      throw e;
    }
    return h;
  }

  get env(): NodeJS.ProcessEnv {
    return { PATH: process.env.PATH, EXECGATE_SOCKET: this.socket, EXECGATE_CONFIG: this.config };
  }

  /** The last part of every run's stderr, for a failure message. */
  stderrTail(): string {
    return this.err.slice(-4000);
  }

  /** Starts the daemon and resolves once it logged daemon_started (ms taken), or throws. */
  async start(): Promise<number> {
    const t0 = performance.now();
    // An interrupted run leaves no daemon behind (the swtpm, too, dies with this process).
    const [cmd, ...args] = await dieWithParent([process.execPath, CLI, "daemon", "--config", this.config]);
    const c = spawn(cmd!, args, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = c;
    this.killing = false;
    let run = "";
    c.stderr!.on("data", (b: Buffer) => {
      run += b.toString();
      this.err = (this.err + b.toString()).slice(-STDERR_KEEP);
    });
    this.exited = new Promise((r) =>
      c.once("exit", (code, signal) => {
        if (!this.killing) this.unexpectedExit ??= `daemon ${c.pid} exited by itself: ${code ?? signal}`;
        r(code);
      }),
    );
    const end = Date.now() + 60_000;
    while (!run.includes("daemon_started")) {
      if (c.exitCode !== null || c.signalCode !== null || Date.now() > end)
        throw new Error(`daemon did not start:\n${run.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return performance.now() - t0;
  }

  /** kill -9, then wait until the process is gone. */
  async crash(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.killing = true;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  /** SIGTERM (an orderly stop: final checkpoint), then wait for the exit code. */
  async stop(): Promise<number | null> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null)
      return this.child?.exitCode ?? null;
    this.killing = true;
    this.child.kill("SIGTERM");
    return this.exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    await this.tpm.stop();
  }

  /** Runs the built CLI (`audit export`, `audit verify`) against this host. */
  cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        process.execPath,
        [CLI, ...args],
        { env: this.env, encoding: "utf8", maxBuffer: 64 << 20, timeout: 600_000 },
        (e, stdout, stderr) =>
          resolve({ code: e ? (typeof e.code === "number" ? e.code : 99) : 0, stdout, stderr }),
      ),
    );
  }
}
