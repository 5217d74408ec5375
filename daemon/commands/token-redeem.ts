import type { ExecgateClient } from "../../src/client/index.js";
import { toHex } from "../../src/core/hex.js";
import { flag, parseCommandArgs, printJson } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";
import { connect, orDenied, SOCKET_HELP, SOCKET_OPTION, tokenInput } from "./token-common.js";

export const command: Command = {
  summary: "redeem a token once with the daemon (the start of the execution it authorizes)",
  usage:
    "(--in F | TOKEN_B64URL) [--json] [--socket P]\n" +
    "  --in F: raw token bytes (token request --out) or base64url text\n" +
    `${SOCKET_HELP}\n` +
    "Exit: 0 redeemed, 1 denied (execgate: denied: <reason> on stderr), 2 usage, 3 daemon unreachable.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      { in: { type: "string" }, json: { type: "boolean" }, ...SOCKET_OPTION },
      true,
    );
    const token = await tokenInput(p);
    let client: ExecgateClient | undefined;
    try {
      client = await connect(p);
      const c = client;
      return await orDenied(
        async () => {
          const r = await c.redeem(token);
          const out = { tokenId: toHex(r.tokenId), scope: r.scope, action: toHex(r.action) };
          if (flag(p, "json")) printJson(out);
          else
            process.stdout.write(`redeemed token ${out.tokenId}: scope ${out.scope}, action ${out.action}\n`);
          return EXIT.ok;
        },
        flag(p, "json"),
      );
    } finally {
      await client?.close();
    }
  },
};
