import { createPublicKey } from "node:crypto";
import { toHex } from "../../src/core/hex.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { flag, hexArg, parseCommandArgs, printJson, str, writeOutput } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import { connect, orDenied, SOCKET_HELP, SOCKET_OPTION } from "./token-common.js";

/** Fetches an epoch's evidence from the daemon for a remote or offline verifier. */
export const command: Command = {
  summary: "fetch the current (or a named) epoch's evidence: epoch record, issuer key, AK, checkpoint",
  usage:
    "[--epoch HEX] [--record-out F] [--ak-pub-out F.pem] [--checkpoint-out F] [--hsm-signature-out F] [--hsm-pub-out F.pem] [--json] [--socket P]\n" +
    "  --hsm-*: with an HSM root, the HSM signature over the epoch binding and the HSM public key\n" +
    "  --epoch: the epoch a token names (its `epoch` claim); default: the current one\n" +
    `${SOCKET_HELP}\n` +
    "Exit: 0 ok, 1 denied (execgate: denied: <reason> on stderr), 2 usage,\n" +
    "  3 daemon unreachable or an output file cannot be written.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...SOCKET_OPTION,
      epoch: { type: "string" },
      "record-out": { type: "string" },
      "ak-pub-out": { type: "string" },
      "checkpoint-out": { type: "string" },
      "hsm-signature-out": { type: "string" },
      "hsm-pub-out": { type: "string" },
      json: { type: "boolean" },
    });
    const epoch = str(p, "epoch") === undefined ? undefined : hexArg(p, "epoch");
    if (epoch && epoch.length !== 32) throw usageError("--epoch must be 32 bytes of hex");
    return orDenied(async () => {
      const c = await connect(p);
      try {
        const ev = await c.evidence(epoch);
        const record = ev.get("record");
        const ak = ev.get("ak_public");
        const cp = ev.get("checkpoint");
        const out = str(p, "record-out");
        if (out && record instanceof Uint8Array) await writeOutput(out, record, "epoch record");
        const akOut = str(p, "ak-pub-out");
        if (akOut && ak instanceof Uint8Array) {
          await writeOutput(
            akOut,
            String(tpmPublicKey(parseTpm2bPublic(ak)).export({ type: "spki", format: "pem" })),
            "AK public key",
          );
        }
        const hsmSig = ev.get("hsm_signature");
        const hsmPub = ev.get("hsm_public");
        const sigOut = str(p, "hsm-signature-out");
        if (sigOut && hsmSig instanceof Uint8Array) await writeOutput(sigOut, hsmSig, "HSM signature");
        const hsmPubOut = str(p, "hsm-pub-out");
        if (hsmPubOut && hsmPub instanceof Uint8Array) {
          const pem = createPublicKey({ key: Buffer.from(hsmPub), format: "der", type: "spki" }).export({
            type: "spki",
            format: "pem",
          });
          await writeOutput(hsmPubOut, String(pem), "HSM public key");
        }
        const cpOut = str(p, "checkpoint-out");
        if (cpOut && typeof cp === "string") await writeOutput(cpOut, cp, "checkpoint");
        const hash = ev.get("epoch_hash");
        const issuer = ev.get("issuer_key");
        const summary = {
          epoch: hash instanceof Uint8Array ? toHex(hash) : null,
          issuerKey: issuer instanceof Uint8Array ? toHex(issuer) : null,
          recordBytes: record instanceof Uint8Array ? record.length : 0,
          checkpoint: typeof cp === "string" ? cp : null,
        };
        if (flag(p, "json")) printJson(summary);
        else process.stdout.write(`epoch ${summary.epoch}\nissuer key ${summary.issuerKey}\n`);
        return EXIT.ok;
      } finally {
        await c.close();
      }
    });
  },
};
