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
    "[--epoch HEX] [--record-out F] [--ak-pub-out F.pem] [--checkpoint-out F] [--json] [--socket P]\n" +
    "  --epoch: the epoch a token names (its `epoch` claim); default: the current one\n" +
    `${SOCKET_HELP}`,
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...SOCKET_OPTION,
      epoch: { type: "string" },
      "record-out": { type: "string" },
      "ak-pub-out": { type: "string" },
      "checkpoint-out": { type: "string" },
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
