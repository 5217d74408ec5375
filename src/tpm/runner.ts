import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { type ExecOutcome, execOutside } from "./spawner.js";

/**
 * Runs tpm2-tools as untrusted child processes (docs/tpm.md): absolute tool path, fixed argv,
 * no shell, an environment that holds only the TCTI, a timeout, a private temp directory per
 * call (inputs written in, outputs read back as bytes), and one call in flight at a time — a
 * TPM executes one command at a time and swtpm serves one connection at a time.
 */
export interface TpmRunnerOptions {
  /** TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:path=/run/x/swtpm.sock`. */
  readonly tcti: string;
  /** Kill a call that has not finished after this many ms (default 10 000). */
  readonly timeoutMs?: number;
  /** Where the tpm2_* binaries live (default /usr/bin). */
  readonly toolsDir?: string;
}

export interface TpmCall {
  readonly inputs?: Readonly<Record<string, Uint8Array>>;
  /** Files the tool writes (relative names); each must exist afterwards. */
  readonly outputs?: readonly string[];
}

export interface TpmResult {
  readonly stdout: string;
  readonly files: Readonly<Record<string, Uint8Array>>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_OUTPUT_BYTES = 1 << 20;
const TOOL_NAME = /^tpm2_[a-z_]+$/;
const FILE_NAME = /^[A-Za-z0-9_.-]+$/;

export class TpmRunner {
  readonly tcti: string;
  private readonly timeoutMs: number;
  private readonly toolsDir: string;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: TpmRunnerOptions) {
    this.tcti = options.tcti;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.toolsDir = options.toolsDir ?? "/usr/bin";
  }

  /** Runs `tool argv…` with cwd = a fresh private directory; serialised with every other call. */
  run(tool: string, argv: readonly string[], call: TpmCall = {}): Promise<TpmResult> {
    const next = this.tail.then(
      () => this.runRecovering(tool, argv, call),
      () => this.runRecovering(tool, argv, call),
    );
    this.tail = next.catch(() => undefined);
    return next;
  }

  /**
   * A TPM out of object or session memory between our calls holds contexts nobody will flush: a
   * client killed mid-command on a TPM without a resource manager (swtpm, /dev/tpm0) leaves them
   * loaded. Calls are serialised and the daemon is the TPM's one user, so whatever is loaded now
   * is such a leak: flush transient objects and sessions, then try the call once more. Through
   * /dev/tpmrm0 the kernel flushes a dead client's contexts itself and this never triggers.
   */
  private async runRecovering(tool: string, argv: readonly string[], call: TpmCall): Promise<TpmResult> {
    try {
      return await this.runNow(tool, argv, call);
    } catch (e) {
      const rc = e instanceof ExecgateError ? e.detail?.rc : undefined;
      if (tool === "tpm2_flushcontext" || typeof rc !== "number" || !CONTEXT_EXHAUSTED.includes(rc & 0xfff))
        throw e;
      for (const what of ["--transient-object", "--loaded-session", "--saved-session"]) {
        await this.runNow("tpm2_flushcontext", [what], {}).catch(() => undefined);
      }
      return this.runNow(tool, argv, call);
    }
  }

  private async runNow(tool: string, argv: readonly string[], call: TpmCall): Promise<TpmResult> {
    if (!TOOL_NAME.test(tool)) throw new ExecgateError("internal", `not a tpm2-tools name: ${tool}`);
    const dir = await mkdtemp(join(tmpdir(), "execgate-tpm-"));
    try {
      for (const [name, bytes] of Object.entries(call.inputs ?? {})) {
        checkFileName(name);
        await writeFile(join(dir, name), bytes, { mode: 0o600 });
      }
      const stdout = await this.exec(tool, argv, dir);
      const files: Record<string, Uint8Array> = {};
      for (const name of call.outputs ?? []) {
        checkFileName(name);
        try {
          files[name] = new Uint8Array(await readFile(join(dir, name)));
        } catch {
          throw new ExecgateError("hardware_error", `${tool} did not write ${name}`, { tool });
        }
      }
      return { stdout, files };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async exec(tool: string, argv: readonly string[], cwd: string): Promise<string> {
    // From a helper process: spawning from this one stalls its event loop (spawner.ts).
    const r = await execOutside(join(this.toolsDir, tool), argv, {
      cwd,
      env: { TPM2TOOLS_TCTI: this.tcti },
      timeoutMs: this.timeoutMs,
      maxBuffer: MAX_OUTPUT_BYTES,
    });
    if (r.error) throw classifyFailure(tool, r.error, r.stderr);
    return r.stdout;
  }
}

function checkFileName(name: string): void {
  if (!FILE_NAME.test(name)) throw new ExecgateError("internal", `bad file name for a TPM call: ${name}`);
}

type ExecFailure = NonNullable<ExecOutcome["error"]>;

/** TPM response codes that mean something specific to us (TPM 2.0 Part 2 §6.6). */
const TPM_RC_LOCKOUT = 0x921;
const TPM_RC_RETRY = 0x922;
const TPM_RC_YIELDED = 0x908;
const TPM_RC_CANCELED = 0x909;
/** TPM_RC_OBJECT_MEMORY, _SESSION_MEMORY, _SESSION_HANDLES, _OBJECT_HANDLES (Part 2 §6.6.3). */
const CONTEXT_EXHAUSTED = [0x902, 0x903, 0x905, 0x906];

/** Maps a failed tool run to the closed error set, keeping the TPM response code when there is one. */
export function classifyFailure(tool: string, error: ExecFailure, stderr: string): ExecgateError {
  const detail: Record<string, unknown> = { tool, stderr: stderr.slice(-2000) };
  if (error.code === "ENOENT" || error.code === "EACCES") {
    return new ExecgateError(
      "hardware_unavailable",
      `${tool} cannot be run (${error.code}): is tpm2-tools installed?`,
      detail,
    );
  }
  if (error.killed || error.signal === "SIGKILL") {
    return new ExecgateError(
      "hardware_unavailable",
      `${tool} did not finish in time: the TPM is not answering`,
      detail,
    );
  }
  const rc = responseCode(stderr);
  if (rc !== undefined) detail.rc = rc;
  if (rc !== undefined && (rc & 0xfff) === TPM_RC_LOCKOUT) {
    return new ExecgateError(
      "tpm_lockout",
      `${tool}: the TPM is in dictionary-attack lockout (0x921)`,
      detail,
    );
  }
  if (rc !== undefined && [TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_CANCELED].includes(rc & 0xfff)) {
    return new ExecgateError(
      "hardware_unavailable",
      `${tool}: the TPM asked to retry (0x${rc.toString(16)})`,
      detail,
    );
  }
  if (isTransportFailure(stderr, rc)) {
    return new ExecgateError("hardware_unavailable", `${tool}: cannot reach the TPM`, detail);
  }
  const why = rc === undefined ? `exit ${String(error.code)}` : `TPM response 0x${rc.toString(16)}`;
  return new ExecgateError("hardware_error", `${tool} failed: ${why}: ${lastLine(stderr)}`, detail);
}

/** tpm2-tools prints `ErrorCode (0x000a0008)` or `…(0x00000921)`; the last one is the outermost. */
function responseCode(stderr: string): number | undefined {
  const all = [...stderr.matchAll(/ErrorCode \(0x([0-9a-fA-F]{8})\)/g)];
  const last = all.at(-1);
  return last ? Number.parseInt(last[1]!, 16) : undefined;
}

/**
 * TSS layer codes (bits 16..23) 0x0a (TCTI) and the "could not initialise the TCTI" messages
 * mean the TPM was not reached at all — not that it refused.
 */
function isTransportFailure(stderr: string, rc: number | undefined): boolean {
  if (rc !== undefined && ((rc >>> 16) & 0xff) === 0x0a) return true;
  return /tcti|Failed to connect|Connection refused|No such file or directory|Esys_Initialize|Tss2_TctiLdr/i.test(
    stderr,
  );
}

function lastLine(s: string): string {
  const lines = s.trim().split("\n");
  return (lines.at(-1) ?? "").slice(0, 300);
}
