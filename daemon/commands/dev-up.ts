import { randomBytes } from "node:crypto";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { toHex } from "../../src/core/hex.js";
import { devConfigToml, devPolicyToml } from "../../src/dev/files.js";
import { Swtpm } from "../../src/dev/swtpm.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { verifyEkChain } from "../../src/tpm/ek-chain.js";
import { enroll } from "../../src/tpm/enroll.js";
import { quote } from "../../src/tpm/ops/attest.js";
import { handleHex } from "../../src/tpm/ops/handles.js";
import { DEFAULT_PCR_SELECTION, pcrRead } from "../../src/tpm/ops/pcr.js";
import { pcrSelectionToText } from "../../src/tpm/structures/pcr-selection.js";
import { parsePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { verifyCertify, verifyQuote } from "../../src/tpm/verify-quote.js";
import { flag, parseCommandArgs, printJson, str } from "../args.js";
import type { Command } from "../cli.js";
import { startDaemon } from "../daemon.js";
import { EXIT } from "../exit.js";

/**
 * The embedded default: a swtpm in DIR (manufactured with EK certificates on first run, resumed
 * afterwards), enrollment, a generated dev config and policy (the invoking user may ask for
 * scope `dev`; golden PCRs are the current ones), then the daemon in the foreground. DIR/env
 * holds EXECGATE_CONFIG, EXECGATE_SOCKET and TPM2TOOLS_TCTI for other shells.
 * `--check` instead enrolls, quotes once, verifies everything and exits.
 */
export const command: Command = {
  summary:
    "embedded default: swtpm in DIR + dev config and policy, then the daemon (--check: verify once and exit)",
  usage: "[--dir DIR (default ./.execgate-dev)] [--check] [--json]",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      dir: { type: "string" },
      check: { type: "boolean" },
      json: { type: "boolean" },
    });
    const dir = resolve(str(p, "dir") ?? ".execgate-dev");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tpm = await Swtpm.start({ dir: join(dir, "tpm") });
    try {
      if (flag(p, "check")) return await check(tpm, dir, flag(p, "json"));
      return await serve(tpm, dir);
    } finally {
      await tpm.stop();
    }
  },
};

async function serve(tpm: Swtpm, dir: string): Promise<number> {
  await enroll(tpm.runner);
  const config = join(dir, "execgate.toml");
  const policy = join(dir, "policy.toml");
  const socket = join(dir, "execgate.sock");
  const exists = (f: string) =>
    access(f).then(
      () => true,
      () => false,
    );
  if (!(await exists(policy))) {
    const pcrs = pcrHexFromTpm(await pcrRead(tpm.runner, DEFAULT_PCR_SELECTION));
    const uid = Number(process.env.SUDO_UID ?? process.getuid?.() ?? 0);
    await writeFile(policy, devPolicyToml({ uid, pcrs: pcrs as Record<string, Record<string, string>> }));
  }
  if (!(await exists(config))) {
    await writeFile(config, devConfigToml({ socket, stateDir: join(dir, "state"), tcti: tpm.tcti, policy }));
  }
  await writeFile(
    join(dir, "env"),
    `EXECGATE_CONFIG=${config}\nEXECGATE_SOCKET=${socket}\nTPM2TOOLS_TCTI=${tpm.tcti}\n`,
  );
  const daemon = await startDaemon(config);
  process.stderr.write(
    `execgate dev: daemon on ${daemon.socket} (swtpm in ${join(dir, "tpm")}); stop with Ctrl-C\n` +
      `  in another shell:  set -a; . ${join(dir, "env")}; set +a\n` +
      "                     execgate status; execgate run --scope dev -- echo hello\n",
  );
  return daemon.done;
}

async function check(tpm: Swtpm, dir: string, json: boolean): Promise<number> {
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
  const nonce = new Uint8Array(randomBytes(32));
  const q = await quote(tpm.runner, {
    akHandle: e.akHandle,
    selection: DEFAULT_PCR_SELECTION,
    qualifyingData: nonce,
  });
  const verified = verifyQuote({
    attest: q.attest,
    signature: q.signature,
    akPublic,
    expectedQualifyingData: nonce,
    expectedSelection: DEFAULT_PCR_SELECTION,
    pcrValues: parsePcrsFile(q.pcrsFile).values,
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
  if (json) printJson(report);
  else {
    const lines = [
      `execgate dev: swtpm in ${dir} (${tpm.tcti})`,
      `  AK ${report.ak.handle} ${e.akCreated ? "created" : "resumed"}`,
      ...report.ekCertificates.map((c) => `  EK certificate ${c.nvIndex} (${c.key}): ${c.chain}`),
      `  signing key ${report.signingKey.handle} certified by the AK: ${report.signingKey.certifiedByAk}`,
      verified.ok
        ? `  quote over ${pcrSelectionToText(verified.quote.selection)}: VALID (resetCount ${verified.quote.resetCount})`
        : `  quote: INVALID (${verified.check}: ${verified.detail})`,
      ok ? "result: attested" : "result: NOT attested",
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return ok ? EXIT.ok : EXIT.failed;
}
