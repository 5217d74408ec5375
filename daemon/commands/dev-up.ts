import { type KeyObject, randomBytes } from "node:crypto";
import { access, chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { encodeEpochBinding } from "../../src/attest/binding.js";
import { evaluateEpoch } from "../../src/attest/epoch.js";
import { isExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { makeDirs } from "../../src/core/mkdirs.js";
import { devConfigToml, devPolicyToml } from "../../src/dev/files.js";
import { SoftHsm } from "../../src/dev/softhsm.js";
import { Swtpm } from "../../src/dev/swtpm.js";
import { verifyHsmEpoch } from "../../src/hsm/epoch.js";
import { generateHsmKey, HsmKey } from "../../src/hsm/hsm.js";
import { LockFile } from "../../src/lineage/lock.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { verifyEkChain } from "../../src/tpm/ek-chain.js";
import { type Enrollment, enroll } from "../../src/tpm/enroll.js";
import { freshQuote } from "../../src/tpm/fresh-quote.js";
import { handleHex } from "../../src/tpm/ops/handles.js";
import { DEFAULT_PCR_SELECTION, pcrRead } from "../../src/tpm/ops/pcr.js";
import { pcrSelectionToText } from "../../src/tpm/structures/pcr-selection.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { verifyCertify } from "../../src/tpm/verify-quote.js";
import { flag, parseCommandArgs, printJson, str } from "../args.js";
import type { Command } from "../cli.js";
import { StartupError, startDaemon } from "../daemon.js";
import { pinFiles } from "../enrollment-pins.js";
import { EXIT, usageError } from "../exit.js";

/**
 * The embedded default: a swtpm in DIR (manufactured with EK certificates on first run, resumed
 * afterwards), enrollment, a generated dev config and policy (the invoking user may ask for
 * scopes `dev` and `dev-fresh`; golden PCRs are the current ones), then the daemon in the foreground. DIR/env
 * holds EXECGATE_CONFIG, EXECGATE_SOCKET and TPM2TOOLS_TCTI for other shells; DIR/ek-ca.pem the
 * swtpm's EK CA (root + issuer) for `audit verify --trust`. One dev up per DIR (DIR/LOCK).
 * `--check` instead enrolls, quotes once, verifies everything and exits.
 */
export const command: Command = {
  summary:
    "embedded default: swtpm + a SoftHSM2 key in DIR, a dev config and policy, then the daemon (--check: verify once)",
  usage:
    "[--dir DIR (default ./.execgate-dev)] [--root tpm|hsm|tpm+hsm (default)] [--check] [--json]\n" +
    "  --root tpm+hsm: every epoch is a swtpm quote AND a SoftHSM2 signature; tpm: swtpm only;\n" +
    "  hsm: SoftHSM2 only, as on a host without a TPM (docs/hsm.md)\n" +
    "Exit: with --check 0 attested, 1 not; serving, as execgate daemon (0 stopped cleanly, 2 refused:\n" +
    "  configuration, 3 refused: hardware or lineage); 2 usage; 3 DIR in use by another dev up,\n" +
    "  swtpm or SoftHSM2 unavailable.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      dir: { type: "string" },
      root: { type: "string" },
      check: { type: "boolean" },
      json: { type: "boolean" },
    });
    const dir = resolve(str(p, "dir") ?? ".execgate-dev");
    // The embedded default is both roots: swtpm for quotes, a SoftHSM2 key beside it.
    const root = str(p, "root") ?? "tpm+hsm";
    if (root !== "tpm" && root !== "hsm" && root !== "tpm+hsm")
      throw usageError("--root must be tpm, hsm or tpm+hsm");
    await makeDirs(dir, 0o700);
    const owner = sudoOwner();
    if (owner) await chown(dir, owner.uid, owner.gid);
    // One dev up per DIR, before anything touches the swtpm or SoftHSM2 state in it: a second
    // instance would otherwise stop the running one's swtpm as a "leftover" (Swtpm.start).
    let instance: LockFile;
    try {
      instance = await LockFile.acquire(dir, "execgate dev up directory");
    } catch (e) {
      if (!isExecgateError(e, "io_error") || e.detail.holder === undefined) throw e;
      const pid = String(e.detail.holder).split(" ")[0];
      process.stderr.write(
        `execgate dev up: ${dir} is in use by another execgate dev up (${pid ? `pid ${pid}` : "holder unknown"}); ` +
          "stop it first, or use another --dir\n",
      );
      return EXIT.io;
    }
    try {
      if (root === "hsm" || (root === "tpm+hsm" && !flag(p, "check"))) {
        return await devHsm(dir, root, flag(p, "check"), flag(p, "json"));
      }
      const tpm = await Swtpm.start({ dir: join(dir, "tpm") });
      try {
        if (flag(p, "check")) {
          const hsmPart = root === "tpm+hsm" ? await hsmCheck(await prepareHsm(dir), dir, root) : undefined;
          return await check(tpm, dir, flag(p, "json"), hsmPart);
        }
        return await serve(tpm, dir);
      } finally {
        await tpm.stop();
      }
    } finally {
      await instance.release();
    }
  },
};

const HSM_KEY = "execgate-root";

/**
 * Run as root through sudo, the dev policy grants SUDO_UID (the developer), who must reach
 * DIR/env and the socket (0666) in DIR: DIR (0700) and DIR/env are given to that user. What
 * the daemon, swtpm and SoftHSM2 keep inside (state, the PIN) stays root's.
 */
function sudoOwner(env: NodeJS.ProcessEnv = process.env): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const { SUDO_UID: uid, SUDO_GID: gid } = env;
  if (!uid || !gid || !/^\d+$/.test(uid) || !/^\d+$/.test(gid) || uid === "0") return undefined;
  return { uid: Number(uid), gid: Number(gid) };
}

/** The uid the dev policy grants: the developer behind sudo, else whoever runs dev up. */
const devUid = (): number => Number(process.env.SUDO_UID ?? process.getuid?.() ?? 0);

interface CheckPart {
  readonly ok: boolean;
  readonly report: Record<string, unknown>;
  readonly lines: readonly string[];
}

/** The dev SoftHSM2 token and root key (made on first run, resumed after). */
async function prepareHsm(dir: string): Promise<{ hsm: SoftHsm; created: boolean; publicKey: KeyObject }> {
  const hsm = await SoftHsm.create({ dir: join(dir, "hsm") });
  // The module reads SOFTHSM2_CONF when this process first initialises it.
  process.env.SOFTHSM2_CONF = hsm.conf;
  const key = await generateHsmKey({
    module: hsm.module,
    tokenLabel: hsm.label,
    keyLabel: HSM_KEY,
    pin: hsm.pin,
    algorithm: "ecdsa-p256",
  });
  return { hsm, created: key.created, publicKey: key.publicKey };
}

/** Signs one epoch binding with the HSM key and verifies it as an auditor would (verifyHsmEpoch). */
async function hsmCheck(
  prepared: { hsm: SoftHsm; created: boolean; publicKey: KeyObject },
  dir: string,
  root: string,
): Promise<CheckPart> {
  const { hsm } = prepared;
  const signer = await HsmKey.open({
    module: hsm.module,
    tokenLabel: hsm.label,
    keyLabel: HSM_KEY,
    pin: hsm.pin,
  });
  let v: ReturnType<typeof verifyHsmEpoch>;
  try {
    const binding = {
      seq: 0,
      prev: new Uint8Array(32),
      issuer: new Uint8Array(randomBytes(32)),
      checkpoint: { size: 0, root: new Uint8Array(32) },
      bootId: "dev-check",
      nonce: new Uint8Array(randomBytes(32)),
    };
    const signature = await signer.sign(encodeEpochBinding(binding));
    const r = evaluateEpoch({
      binding,
      hsm: { signature, publicKey: signer.publicKey },
      policy: { pcrs: {}, eventlog: undefined, ima: undefined },
      policyDigest: new Uint8Array(32),
      startedAtMs: 0,
      startedMonoUs: 0,
      verifiedAtMs: 0,
    });
    v = verifyHsmEpoch(
      { quote: r.record, ...(r.hsmSignature ? { hsmSignature: r.hsmSignature } : {}) },
      prepared.publicKey,
    );
  } finally {
    await signer.close();
  }
  return {
    ok: v.ok,
    report: {
      dir,
      root,
      hsm: { token: hsm.label, key: HSM_KEY, created: prepared.created, conf: hsm.conf },
      epoch: v.ok ? { valid: true } : { valid: false, check: v.check, detail: v.detail },
    },
    lines: [
      `execgate dev: SoftHSM2 token ${hsm.label} in ${join(dir, "hsm")}, key ${HSM_KEY} ${prepared.created ? "created" : "resumed"}`,
      `  HSM-signed epoch: ${v.ok ? "VALID" : `INVALID (${v.check}: ${v.detail})`}`,
    ],
  };
}

/**
 * `--root hsm` / `--root tpm+hsm`: a SoftHSM2 token in DIR/hsm (initialised on first run, its
 * PIN in DIR/hsm/pin), the root key made as `execgate enroll --hsm` makes it, and a config and
 * state of their own per root (a lineage's checkpoints stay signed by one key).
 */
async function devHsm(
  dir: string,
  root: "hsm" | "tpm+hsm",
  checkOnly: boolean,
  json: boolean,
): Promise<number> {
  const prepared = await prepareHsm(dir);
  const { hsm } = prepared;
  if (checkOnly) {
    const part = await hsmCheck(prepared, dir, root);
    if (json) printJson({ ok: part.ok, ...part.report });
    else process.stdout.write(`${part.lines.join("\n")}\n`);
    return part.ok ? EXIT.ok : EXIT.failed;
  }
  return root === "hsm" ? serveHsm(dir, hsm) : serveTpmHsm(dir, hsm);
}

function hsmConfigToml(hsm: SoftHsm, root: string): string {
  return [
    "[hsm]",
    `require = ${JSON.stringify(root)}`,
    `module = ${JSON.stringify(hsm.module)}`,
    `token_label = ${JSON.stringify(hsm.label)}`,
    `key_label = ${JSON.stringify(HSM_KEY)}`,
    `pin_file = ${JSON.stringify(hsm.pinFile)}`,
    "",
  ].join("\n");
}

async function serveHsm(dir: string, hsm: SoftHsm): Promise<number> {
  const config = join(dir, "execgate-hsm.toml");
  const policy = join(dir, "policy-hsm.toml");
  const socket = join(dir, "execgate.sock");
  const uid = devUid();
  // No TPM: no golden PCR values (they would fail closed).
  if (!(await exists(policy))) await writeFile(policy, devPolicyToml({ uid, pcrs: {} }));
  if (!(await exists(config))) {
    const base = devConfigToml({
      socket,
      stateDir: join(dir, "state-hsm"),
      tcti: "device:/dev/null",
      policy,
    });
    await writeFile(config, `${base}\n${hsmConfigToml(hsm, "hsm")}`);
  }
  return runDev(
    dir,
    config,
    socket,
    [`SOFTHSM2_CONF=${hsm.conf}`],
    `SoftHSM2 in ${join(dir, "hsm")}, no TPM`,
  );
}

async function serveTpmHsm(dir: string, hsm: SoftHsm): Promise<number> {
  const tpm = await Swtpm.start({ dir: join(dir, "tpm") });
  try {
    await writePins(dir, await enroll(tpm.runner));
    const config = join(dir, "execgate-tpm+hsm.toml");
    const policy = join(dir, "policy.toml");
    const socket = join(dir, "execgate.sock");
    if (!(await exists(policy))) {
      const pcrs = pcrHexFromTpm(await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION));
      await writeFile(
        policy,
        devPolicyToml({ uid: devUid(), pcrs: pcrs as Record<string, Record<string, string>> }),
      );
    }
    if (!(await exists(config))) {
      const base = devConfigToml({ socket, stateDir: join(dir, "state-tpm+hsm"), tcti: tpm.tcti, policy });
      await writeFile(config, `${base}\n${hsmConfigToml(hsm, "tpm+hsm")}`);
    }
    return await runDev(
      dir,
      config,
      socket,
      [`TPM2TOOLS_TCTI=${tpm.tcti}`, `SOFTHSM2_CONF=${hsm.conf}`],
      `swtpm in ${join(dir, "tpm")}, SoftHSM2 in ${join(dir, "hsm")}`,
      tpm,
    );
  } finally {
    await tpm.stop();
  }
}

/** DIR/enrollment: the public keys an auditor pins (as `execgate enroll` writes them), rewritten each start. */
async function writePins(dir: string, e: Enrollment): Promise<void> {
  const out = join(dir, "enrollment");
  await mkdir(out, { recursive: true });
  for (const [name, data] of pinFiles(e)) await writeFile(join(out, name), data);
}

const exists = (f: string) =>
  access(f).then(
    () => true,
    () => false,
  );

async function runDev(
  dir: string,
  config: string,
  socket: string,
  env: string[],
  what: string,
  tpm?: Swtpm,
): Promise<number> {
  // The dev EK CA for `audit verify --trust`: swtpm_localca's root and issuer in one PEM file
  // (the root alone does not verify the EK certificates, which the issuer signed).
  const ekCa = join(dir, "ek-ca.pem");
  if (tpm) {
    const pems = [await readFile(tpm.paths.rootCa, "utf8"), await readFile(tpm.paths.issuerCa, "utf8")];
    await writeFile(ekCa, pems.map((t) => (t.endsWith("\n") ? t : `${t}\n`)).join(""));
  }
  await writeFile(
    join(dir, "env"),
    [`EXECGATE_CONFIG=${config}`, `EXECGATE_SOCKET=${socket}`, ...env, ""].join("\n"),
  );
  const owner = sudoOwner();
  if (owner) await chown(join(dir, "env"), owner.uid, owner.gid);
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon(config);
  } catch (e) {
    // As `execgate daemon` reports it (runDaemon): one line and its exit code, not "internal".
    if (!(e instanceof StartupError)) throw e;
    process.stderr.write(`execgate dev up: ${e.message}\n`);
    return e.exitCode;
  }
  process.stderr.write(
    `execgate dev: daemon on ${daemon.socket} (${what}); stop with Ctrl-C\n` +
      `  in another shell:  set -a; . ${join(dir, "env")}; set +a\n` +
      "                     execgate status; execgate run --scope dev -- echo hello\n" +
      (tpm
        ? `  dev EK CA (swtpm_localca root + issuer, in ${tpm.paths.caDir}) for audit verify: --trust ${ekCa}\n` +
          `  the enrollment an auditor pins: ${join(dir, "enrollment")}; audit with:\n` +
          `    execgate audit export --out BUNDLE && execgate audit verify BUNDLE --trust ${ekCa} --ak-pub ${join(dir, "enrollment", "ak.pub")}\n`
        : ""),
  );
  return daemon.done;
}

async function serve(tpm: Swtpm, dir: string): Promise<number> {
  await writePins(dir, await enroll(tpm.runner));
  const config = join(dir, "execgate.toml");
  const policy = join(dir, "policy.toml");
  const socket = join(dir, "execgate.sock");
  if (!(await exists(policy))) {
    const pcrs = pcrHexFromTpm(await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION));
    await writeFile(
      policy,
      devPolicyToml({ uid: devUid(), pcrs: pcrs as Record<string, Record<string, string>> }),
    );
  }
  if (!(await exists(config))) {
    await writeFile(config, devConfigToml({ socket, stateDir: join(dir, "state"), tcti: tpm.tcti, policy }));
  }
  return runDev(dir, config, socket, [`TPM2TOOLS_TCTI=${tpm.tcti}`], `swtpm in ${join(dir, "tpm")}`, tpm);
}

async function check(tpm: Swtpm, dir: string, json: boolean, hsmPart?: CheckPart): Promise<number> {
  const e = await enroll(tpm.runner);
  const now = new Date();
  const trust = await readFile(tpm.paths.rootCa, "utf8");
  const intermediates = [await readFile(tpm.paths.issuerCa, "utf8")];
  const chains = e.ekCertificates.map((c) => ({
    nvIndex: handleHex(c.nvIndex),
    key: c.key,
    chain: verifyEkChain({ ekCert: c.der, trustBundlePem: trust, intermediates, now }),
  }));
  const akPublic = tpmPublicKey(parseTpm2bPublic(e.akPublic));
  const cert = verifyCertify({
    attest: e.signingKeyCertify.attest,
    signature: e.signingKeyCertify.signature,
    akPublic,
    expectedQualifyingData: e.signingKeyCertify.qualifyingData,
    certifiedPublic: e.signingKeyPublic,
  });
  const { nonce, verification: verified } = await freshQuote(tpm.runner, {
    akHandle: e.akHandle,
    akPublic,
    selection: DEFAULT_PCR_SELECTION,
  });
  const ok = chains.length > 0 && chains.every((c) => c.chain.ok) && cert.ok && verified.ok;
  const report = {
    ok,
    dir,
    tcti: tpm.tcti,
    ak: { handle: handleHex(e.akHandle), created: e.akCreated },
    ekCertificates: chains.map((c) => ({
      nvIndex: c.nvIndex,
      key: c.key,
      chain: c.chain.ok ? "verified" : `invalid: ${c.chain.detail}`,
    })),
    signingKey: {
      handle: handleHex(e.signingKeyHandle),
      certifiedByAk: cert.ok ? "verified" : `invalid: ${cert.detail}`,
    },
    quote: verified.ok
      ? {
          valid: true,
          nonce: toHex(nonce),
          selection: pcrSelectionToText(verified.quote.selection),
          pcrDigest: toHex(verified.quote.pcrDigest),
          resetCount: verified.quote.resetCount,
          restartCount: verified.quote.restartCount,
          clock: verified.quote.clock.toString(),
        }
      : { valid: false, check: verified.check, detail: verified.detail },
  };
  const allOk = ok && (hsmPart?.ok ?? true);
  if (json)
    printJson({
      ...report,
      ok: allOk,
      ...(hsmPart ? { hsm: hsmPart.report.hsm, hsmEpoch: hsmPart.report.epoch } : {}),
    });
  else {
    const lines = [
      `execgate dev: swtpm in ${dir} (${tpm.tcti})`,
      `  AK ${report.ak.handle} ${e.akCreated ? "created" : "resumed"}`,
      ...report.ekCertificates.map((c) => `  EK certificate ${c.nvIndex} (${c.key}): ${c.chain}`),
      `  signing key ${report.signingKey.handle} certified by the AK: ${report.signingKey.certifiedByAk}`,
      verified.ok
        ? `  quote over ${pcrSelectionToText(verified.quote.selection)}: VALID (resetCount ${verified.quote.resetCount})`
        : `  quote: INVALID (${verified.check}: ${verified.detail})`,
      ...(hsmPart ? hsmPart.lines.map((l) => l.replace(/^execgate dev: /, "  ")) : []),
      allOk ? "result: attested" : "result: NOT attested",
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return allOk ? EXIT.ok : EXIT.failed;
}
