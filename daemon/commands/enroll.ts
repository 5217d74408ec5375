import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Config } from "../../src/config/index.js";
import { toHex } from "../../src/core/hex.js";
import { generateHsmKey } from "../../src/hsm/hsm.js";
import { readPin } from "../../src/hsm/pin.js";
import { DEFAULT_MODULE } from "../../src/hsm/pkcs11.js";
import { verifierKeyString } from "../../src/lineage/note.js";
import { IMA_PCR } from "../../src/measure/ima-replay.js";
import { pcrHexFromTpm } from "../../src/measure/pcrs-input.js";
import { goldenFromPcrs } from "../../src/policy/integrity-schema.js";
import { enroll } from "../../src/tpm/enroll.js";
import { handleHex } from "../../src/tpm/ops/handles.js";
import { DEFAULT_PCR_SELECTION_TEXT, pcrRead } from "../../src/tpm/ops/pcr.js";
import { parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { parseTpm2bPublic, tpmName } from "../../src/tpm/structures/public.js";
import { flag, type Parsed, parseCommandArgs, printJson, requireStr, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { loadConfigArg } from "../config-arg.js";
import { pinFiles } from "../enrollment-pins.js";
import { EXIT, usageError } from "../exit.js";
import { makeOutDir } from "../out-dir.js";
import { runnerFor, signingKeyHandle, TPM_OPTIONS, TPM_USAGE, tpmSettings } from "../tpm-context.js";

/** Every PCR index (0..23), for goldenFromPcrs. */
const PCR_INDICES = Array.from({ length: 24 }, (_, i) => i);

/**
 * Provisions the EK (if absent), the AK and the AK-certified checkpoint signing key, and writes
 * what a verifier needs into --out: public areas (TPM2B_PUBLIC) and PEM keys, EK certificates,
 * the TPM2_Certify evidence, and enrollment.json naming them with their digests.
 */
export const command: Command = {
  summary:
    "provision EK/AK and the AK-certified checkpoint key (and with --hsm the HSM root key); write the enrollment record to --out",
  usage:
    "--out DIR [--ak-alg ecc|rsa] [--signing-key-handle 0x81000020] [--golden-out F [--pcrs SEL]] [--json]\n" +
    "  [--hsm [--hsm-alg p256|ed25519] [--no-tpm]]\n" +
    `  ${TPM_USAGE}\n` +
    "  --golden-out: write the [integrity.pcrs.*] policy section with the TPM's current PCR values\n" +
    `    (default: ${DEFAULT_PCR_SELECTION_TEXT} without PCR 10 — IMA extends it with every measurement,\n` +
    "    so IMA is judged by the [integrity.ima] rules; PCR 10 is written only if --pcrs names it)\n" +
    "  --hsm: make the HSM signing key unless it exists; [hsm] of --config, else $EXECGATE_CONFIG, else\n" +
    "         the defaults; PIN from $EXECGATE_HSM_PIN_FILE, else hsm.pin_file, else hsm.pin_credential\n" +
    "         ($CREDENTIALS_DIRECTORY/<name>, outside systemd /etc/execgate/credentials/<name>)\n" +
    "  --signing-key-handle: where the checkpoint signing key is made or found; else tpm.signing_key_handle\n" +
    "    of the config, else 0x81000020; must differ from the AK handle\n" +
    "  --no-tpm: HSM-only host\n" +
    "Exit: 0 enrolled; 2 usage or configuration (--config unreadable or invalid, signing key handle =\n" +
    "  AK handle, --out an existing file or a path no directory can be made at, wrong HSM PIN);\n" +
    "  3 TPM or HSM unreachable or failing, or the filesystem refuses (permissions, read-only, full).",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...TPM_OPTIONS,
      out: { type: "string" },
      "ak-alg": { type: "string" },
      "signing-key-handle": { type: "string" },
      "golden-out": { type: "string" },
      pcrs: { type: "string" },
      json: { type: "boolean" },
      hsm: { type: "boolean" },
      "hsm-alg": { type: "string" },
      "no-tpm": { type: "boolean" },
    });
    const out = requireStr(p, "out");
    const alg = str(p, "ak-alg") ?? "ecc";
    if (alg !== "ecc" && alg !== "rsa") throw usageError("--ak-alg must be ecc or rsa");
    if (flag(p, "no-tpm") && !flag(p, "hsm")) throw usageError("--no-tpm needs --hsm");
    const config = await loadConfigArg(p);
    const tpm = tpmSettings(p, config);
    const skHandle = signingKeyHandle(p, config, tpm.akHandle);
    await makeOutDir(out);
    const hsm = flag(p, "hsm") ? await enrollHsm(p, config, out) : undefined;
    if (flag(p, "no-tpm")) {
      // HSM-only hosts: the daemon's host id is the HSM key's SPKI digest.
      await hsm!.putVkey(hsm!.keyId);
      const record = { version: 1, hsm: hsm!.record, files: hsm!.files };
      await writeOutput(
        join(out, "enrollment.json"),
        `${JSON.stringify(record, null, 2)}\n`,
        "enrollment.json",
      );
      if (flag(p, "json")) printJson(record);
      else process.stdout.write(`${hsm!.line}; record in ${join(out, "enrollment.json")}\n`);
      return EXIT.ok;
    }
    const runner = runnerFor(tpm);
    const e = await enroll(runner, { akHandle: tpm.akHandle, signingKeyHandle: skHandle, akAlgorithm: alg });

    // With a TPM the host id comes from the EK (SHA-256 of its name), as the daemon derives it.
    await hsm?.putVkey(
      new Uint8Array(
        createHash("sha256")
          .update(tpmName(parseTpm2bPublic(e.ekPublic)))
          .digest(),
      ),
    );
    const files: Record<string, string> = { ...hsm?.files };
    const put = async (name: string, data: Uint8Array | string) => {
      await writeOutput(join(out, name), data, name);
      files[name] = createHash("sha256").update(data).digest("hex");
    };
    for (const [name, data] of pinFiles(e)) await put(name, data);
    await put("signing-key.certify.attest", e.signingKeyCertify.attest);
    await put("signing-key.certify.sig", e.signingKeyCertify.signature);
    for (const c of e.ekCertificates) await put(`ek-cert-${handleHex(c.nvIndex)}.der`, c.der);

    const record = {
      version: 1,
      ek: { handle: handleHex(e.ekHandle), name: toHex(tpmName(parseTpm2bPublic(e.ekPublic))) },
      ak: {
        handle: handleHex(e.akHandle),
        algorithm: alg,
        created: e.akCreated,
        name: toHex(tpmName(parseTpm2bPublic(e.akPublic))),
      },
      signingKey: {
        handle: handleHex(e.signingKeyHandle),
        name: toHex(tpmName(parseTpm2bPublic(e.signingKeyPublic))),
        certifyQualifyingData: toHex(e.signingKeyCertify.qualifyingData),
      },
      ekCertificates: e.ekCertificates.map((c) => ({ nvIndex: handleHex(c.nvIndex), key: c.key })),
      ...(hsm ? { hsm: hsm.record } : {}),
      files,
    };
    await writeOutput(
      join(out, "enrollment.json"),
      `${JSON.stringify(record, null, 2)}\n`,
      "enrollment.json",
    );
    const goldenOut = str(p, "golden-out");
    if (goldenOut !== undefined) {
      const named = str(p, "pcrs");
      const selection = parsePcrSelectionText(named ?? DEFAULT_PCR_SELECTION_TEXT);
      const pcrs = pcrHexFromTpm(await pcrRead(runner, selection)) as Record<string, Record<string, string>>;
      // PCR 10 (IMA) changes with every measurement on a host running IMA, so a golden value
      // for it would soon deny pcr_mismatch: IMA is judged by [integrity.ima], and PCR 10 is
      // written only when --pcrs names it.
      const indices = named === undefined ? PCR_INDICES.filter((i) => i !== IMA_PCR) : undefined;
      await writeOutput(
        goldenOut,
        `# Golden PCR values of this TPM, written by execgate enroll\n${goldenFromPcrs(pcrs, indices)}`,
        "golden values",
      );
    }
    if (flag(p, "json")) printJson(record);
    else {
      process.stdout.write(
        `enrolled: AK ${record.ak.handle} (${alg}${e.akCreated ? ", new" : ", existing"}), signing key ${record.signingKey.handle}, ` +
          `${e.ekCertificates.length} EK certificate(s)${hsm ? `; ${hsm.line}` : ""}; record in ${join(out, "enrollment.json")}\n`,
      );
    }
    return EXIT.ok;
  },
};

/**
 * `--hsm`: the HSM root key by token and key label (generated on the token, never exported),
 * its public key as PEM and as a C2SP note verifier key, and the record naming them.
 */
async function enrollHsm(p: Parsed, config: Config | undefined, out: string) {
  const hsm = config?.hsm;
  const module = hsm?.module ?? DEFAULT_MODULE;
  const tokenLabel = hsm?.tokenLabel ?? "execgate";
  const keyLabel = hsm?.keyLabel ?? "execgate-root";
  const algorithm = (str(p, "hsm-alg") ?? "p256") === "ed25519" ? "ed25519" : "ecdsa-p256";
  if (!["p256", "ed25519", undefined].includes(str(p, "hsm-alg")))
    throw usageError("--hsm-alg must be p256 or ed25519");
  // $EXECGATE_HSM_PIN_FILE wins over the config: enroll runs by hand, outside the unit.
  const envPin = process.env.EXECGATE_HSM_PIN_FILE;
  const pin = await readPin(
    envPin
      ? { pinFile: envPin }
      : {
          ...(hsm?.pinFile !== undefined ? { pinFile: hsm.pinFile } : {}),
          ...(hsm?.pinCredential !== undefined ? { pinCredential: hsm.pinCredential } : {}),
        },
  );
  const k = await generateHsmKey({ module, tokenLabel, keyLabel, pin, algorithm });
  const files: Record<string, string> = {};
  const put = async (name: string, data: string) => {
    await writeOutput(join(out, name), data, name);
    files[name] = createHash("sha256").update(data).digest("hex");
  };
  const spki = k.publicKey.export({ format: "der", type: "spki" });
  const keyId = createHash("sha256").update(spki).digest();
  await put("hsm-key.pem", String(k.publicKey.export({ format: "pem", type: "spki" })));
  /** The checkpoint verifier key, named as the daemon names it: execgate-<host id>. */
  const putVkey = (hostId: Uint8Array) =>
    put(
      "hsm-key.vkey",
      `${verifierKeyString(`execgate-${toHex(hostId.subarray(0, 8))}`, algorithm, k.publicKey)}\n`,
    );
  return {
    keyId: new Uint8Array(keyId),
    putVkey,
    record: {
      module,
      tokenLabel,
      keyLabel,
      algorithm,
      created: k.created,
      spkiSha256: keyId.toString("hex"),
    },
    files,
    line: `HSM key ${JSON.stringify(keyLabel)} on token ${JSON.stringify(tokenLabel)} (${algorithm}${k.created ? ", new" : ", existing"})`,
  };
}
