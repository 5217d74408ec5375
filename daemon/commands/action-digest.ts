import { toHex } from "../../src/core/hex.js";
import { actionDigest } from "../../src/wire/request.js";
import { flag, parseCommandArgs, printJson } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import { checkArgv } from "./token-common.js";

/** Offline: the action digest the daemon computes for an argv, for a policy's `actions` list. */
export const command: Command = {
  summary: "print the action digest of a command line (for a policy's actions list), offline",
  usage:
    "[--json] -- CMD [ARGS...]\n" +
    "  The SHA-256 of the argv as a deterministic CBOR array of text strings, exactly as the daemon\n" +
    "  computes it for `token request --argv-json` and `execgate run` (docs/protocol.md); the words\n" +
    "  are taken as given: no shell, no PATH lookup (write /usr/bin/python3, not python3, if that is\n" +
    "  what the executor sends).\n" +
    '  --json: { "argv": [...], "action": HEX }\n' +
    "Exit: 0 printed, 2 usage.",
  async run(argv) {
    const p = parseCommandArgs(argv, { json: { type: "boolean" } }, true);
    if (p.positionals.length === 0)
      throw usageError("give the command after --: action-digest -- CMD [ARGS...]");
    if (p.positionals[0] === "") throw usageError("the command name is empty");
    const words = checkArgv(p.positionals);
    const action = toHex(actionDigest(words));
    if (flag(p, "json")) printJson({ argv: words, action });
    else process.stdout.write(`${action}\n`);
    return EXIT.ok;
  },
};
