import { cp } from "node:fs/promises";
import { ExecgateError } from "../../src/core/errors.js";
import { flag, parseCommandArgs, printJson, requireStr } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";
import { requireNewOutDir } from "../out-dir.js";
import { connect, orDenied, SOCKET_HELP, SOCKET_OPTION } from "./token-common.js";

/**
 * Has the running daemon (which holds the journal lock) write a self-contained audit bundle,
 * then copies it to --out. Run as root or as the daemon's user.
 */
export const command: Command = {
  summary: "export a self-contained lineage bundle for auditors (needs root or the daemon's user)",
  usage:
    `--out DIR [--json] [--socket P]\n  DIR must not exist. Verify it anywhere with: execgate audit verify DIR --trust CA.pem\n${SOCKET_HELP}\n` +
    "Exit: 0 exported, 1 denied (execgate: denied: <reason> on stderr), 2 usage (also: DIR exists),\n" +
    "  3 daemon unreachable, its export failed, or DIR cannot be written.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      ...SOCKET_OPTION,
      out: { type: "string" },
      json: { type: "boolean" },
    });
    const out = requireStr(p, "out");
    await requireNewOutDir(out);
    return orDenied(async () => {
      const c = await connect(p);
      try {
        const r = await c.exportLineage();
        try {
          await cp(r.path, out, { recursive: true, errorOnExist: true, force: false });
        } catch (e) {
          throw new ExecgateError("io_error", `cannot copy ${r.path} to ${out}: ${(e as Error).message}`);
        }
        if (flag(p, "json")) printJson({ out, entries: r.size });
        else process.stdout.write(`exported ${r.size} entries to ${out}\n`);
        return EXIT.ok;
      } finally {
        await c.close();
      }
    });
  },
};
