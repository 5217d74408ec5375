import { execFile } from "node:child_process";
import { createPublicKey, type KeyObject } from "node:crypto";
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { ExecgateError } from "../core/errors.js";
import { makeDirs } from "../core/mkdirs.js";
import { DEFAULT_MODULE } from "../hsm/pkcs11.js";

const execFileP = promisify(execFile);

/**
 * A SoftHSM2 token for tests, benchmarks and `execgate dev up --root hsm`: its own
 * softhsm2.conf and token directory under `dir` (nothing under /etc or /var/lib is touched),
 * initialised with softhsm2-util; keys made with opensc's pkcs11-tool, selected by label (the
 * slot id changes at every --init-token). Whoever loads the module must have SOFTHSM2_CONF set
 * to `conf` (see `env`) before the first C_Initialize.
 */
export interface SoftHsmOptions {
  readonly dir: string;
  readonly label?: string;
  readonly pin?: string;
  readonly soPin?: string;
  readonly module?: string;
}

export class SoftHsm {
  readonly conf: string;
  readonly tokens: string;
  readonly label: string;
  readonly pin: string;
  readonly module: string;
  readonly pinFile: string;

  private constructor(
    readonly dir: string,
    o: SoftHsmOptions,
  ) {
    this.conf = join(dir, "softhsm2.conf");
    this.tokens = join(dir, "tokens");
    this.label = o.label ?? "execgate";
    this.pin = o.pin ?? "1234";
    this.module = o.module ?? DEFAULT_MODULE;
    this.pinFile = join(dir, "pin");
  }

  /** Environment for processes that load the module. */
  get env(): Record<string, string> {
    return { SOFTHSM2_CONF: this.conf };
  }

  /** Creates the configuration and initialises a fresh token (or resumes one already there). */
  static async create(o: SoftHsmOptions): Promise<SoftHsm> {
    const h = new SoftHsm(o.dir, o);
    await makeDirs(h.tokens);
    await writeFile(
      h.conf,
      [
        `directories.tokendir = ${h.tokens}`,
        "objectstore.backend = file",
        "log.level = ERROR",
        "slots.removable = false",
        "",
      ].join("\n"),
    );
    await writeFile(h.pinFile, `${h.pin}\n`, { mode: 0o600 });
    if ((await readdir(h.tokens)).length === 0) {
      await h.run("softhsm2-util", [
        "--init-token",
        "--free",
        "--label",
        h.label,
        "--pin",
        h.pin,
        "--so-pin",
        o.soPin ?? "5678",
      ]);
    }
    return h;
  }

  /** Makes a key pair with pkcs11-tool (independently of src/hsm): "ec" is P-256. */
  async generateKey(label: string, type: "ec" | "ed25519" = "ec"): Promise<void> {
    await this.run("pkcs11-tool", [
      "--module",
      this.module,
      "--token-label",
      this.label,
      "--login",
      "--pin",
      this.pin,
      "--keypairgen",
      "--key-type",
      type === "ec" ? "EC:prime256v1" : "EC:edwards25519",
      "--label",
      label,
    ]);
  }

  /** The public key of `label` as pkcs11-tool exports it (independently of src/hsm). */
  async exportPublicKey(label: string): Promise<KeyObject> {
    const out = join(this.dir, `export-${process.pid}-${label}.pub`);
    await this.run("pkcs11-tool", [
      "--module",
      this.module,
      "--token-label",
      this.label,
      "--read-object",
      "--type",
      "pubkey",
      "--label",
      label,
      "-o",
      out,
    ]);
    const bytes = await readFile(out);
    // opensc 0.23 writes EC keys as DER SPKI and Ed25519 keys as PEM.
    return bytes.subarray(0, 5).toString() === "-----"
      ? createPublicKey(bytes)
      : createPublicKey({ key: bytes, format: "der", type: "spki" });
  }

  /** The directory of the (single) initialised token. */
  async tokenDir(): Promise<string> {
    const names = (await readdir(this.tokens)).filter((n) => !n.startsWith("."));
    if (names.length !== 1)
      throw new ExecgateError("internal", `expected one token directory in ${this.tokens}`);
    return join(this.tokens, names[0]!);
  }

  /** Fault injection: moves the token's files away (the token is "removed"). */
  async removeToken(): Promise<void> {
    await rename(await this.tokenDir(), join(this.dir, "removed-token"));
  }

  /** Puts the token's files back where they were. */
  async restoreToken(name: string): Promise<void> {
    await rename(join(this.dir, "removed-token"), join(this.tokens, name));
  }

  private async run(cmd: string, args: string[]): Promise<string> {
    try {
      const { stdout } = await execFileP(cmd, args, {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", SOFTHSM2_CONF: this.conf },
        timeout: 30_000,
      });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new ExecgateError("hardware_error", `${cmd} failed: ${(err.stderr ?? err.message).trim()}`);
    }
  }
}
