import { createHash, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { ExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { verifyEkChain } from "../../src/tpm/ek-chain.js";
import { readEkCertificates } from "../../src/tpm/ops/ek-certs.js";
import { HANDLES, handleHex } from "../../src/tpm/ops/handles.js";
import { readFixedProperties } from "../../src/tpm/ops/info.js";
import { readPublic } from "../../src/tpm/ops/keys.js";
import { parseTpm2bPublic, tpmName, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { flag, parseCommandArgs, printJson, str } from "../args.js";
import type { Command } from "../cli.js";
import { loadConfigArg } from "../config-arg.js";
import { EXIT } from "../exit.js";
import { runnerFor, signingKeyHandle, TPM_OPTIONS, TPM_USAGE, tpmSettings } from "../tpm-context.js";

interface KeyInfo {
  handle: string;
  present: boolean;
  name?: string;
  publicKeyPem?: string;
}

export const command: Command = {
  summary: "show the TPM: TCTI, manufacturer, EK/AK/signing-key handles and public keys, EK certificates",
  usage:
    `[--trust CA.pem] [--signing-key-handle 0x81000020] [--json] ${TPM_USAGE}\n` +
    "  --trust: EK CA certificates (PEM, root and intermediates) to check each EK certificate's chain against,\n" +
    "           as the daemon's tpm.ek_ca_bundle does\n" +
    "Exit: 0 ok (with --trust: at least one EK certificate chains to it), 1 no EK certificate chains to --trust,\n" +
    "      2 usage or configuration, 3 TPM unreachable or --trust unreadable.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...TPM_OPTIONS,
      trust: { type: "string" },
      "signing-key-handle": { type: "string" },
      json: { type: "boolean" },
    });
    const config = await loadConfigArg(p);
    const tpm = tpmSettings(p, config);
    const skHandle = signingKeyHandle(p, config, tpm.akHandle);
    const runner = runnerFor(tpm);
    const props = await readFixedProperties(runner);

    const key = async (handle: number): Promise<KeyInfo> => {
      const pub = await readPublic(runner, handle);
      if (!pub) return { handle: handleHex(handle), present: false };
      const t = parseTpm2bPublic(pub);
      return {
        handle: handleHex(handle),
        present: true,
        name: toHex(tpmName(t)),
        publicKeyPem: String(tpmPublicKey(t).export({ type: "spki", format: "pem" })),
      };
    };

    const trustPath = str(p, "trust");
    const trust =
      trustPath === undefined
        ? undefined
        : await readFile(trustPath, "utf8").catch((e: Error) => {
            throw new ExecgateError("io_error", `cannot read --trust ${trustPath}: ${e.message}`);
          });
    const certs = (await readEkCertificates(runner)).map((c) => {
      const x = new X509Certificate(Buffer.from(c.der));
      const chain =
        trust === undefined
          ? undefined
          : verifyEkChain({ ekCert: c.der, trustBundlePem: trust, now: new Date() });
      return {
        nvIndex: handleHex(c.nvIndex),
        key: c.key,
        subject: x.subject,
        issuer: x.issuer,
        notAfter: x.validTo,
        sha256: createHash("sha256").update(c.der).digest("hex"),
        ...(chain === undefined ? {} : { chain: chain.ok ? "verified" : `INVALID (${chain.detail})` }),
      };
    });

    const info = {
      tcti: tpm.tcti,
      manufacturer: props.manufacturer,
      vendor: props.vendor,
      firmwareVersion: props.firmwareVersion,
      ek: await key(HANDLES.ekRsa),
      ak: await key(tpm.akHandle),
      signingKey: await key(skHandle),
      ekCertificates: certs,
    };
    // With --trust the answer is the daemon's start-up check (daemon/ek-check.ts): one EK
    // certificate must chain to the bundle.
    const result = trust !== undefined && !certs.some((c) => c.chain === "verified") ? EXIT.failed : EXIT.ok;
    if (flag(p, "json")) {
      printJson(info);
      return result;
    }
    const lines = [
      `TCTI            ${info.tcti}`,
      `manufacturer    ${info.manufacturer} (${info.vendor}), firmware ${info.firmwareVersion}`,
    ];
    for (const [label, k] of [
      ["EK (RSA)", info.ek],
      ["AK", info.ak],
      ["signing key", info.signingKey],
    ] as const) {
      lines.push(
        `${label.padEnd(16)}${k.handle} ${k.present ? `name ${k.name}` : "absent (run execgate enroll)"}`,
      );
    }
    for (const c of certs) {
      lines.push(
        `EK certificate  ${c.nvIndex} ${c.key}: ${c.subject.replace(/\n/g, ", ")} — issuer ${c.issuer.replace(/\n/g, ", ")}${c.chain ? ` — chain ${c.chain}` : ""}`,
      );
    }
    if (result !== EXIT.ok) lines.push(`no EK certificate chains to ${trustPath}`);
    process.stdout.write(`${lines.join("\n")}\n`);
    return result;
  },
};
