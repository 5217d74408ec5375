import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import {
  type ExecgateClient,
  ExecgateReplyError,
  type IssuedToken,
  type RedeemedToken,
} from "../../src/client/index.js";
import { asExecgateError, ExecgateError } from "../../src/core/errors.js";
import { bytesEqual } from "../../src/core/hex.js";
import { actionDigest } from "../../src/server/protocol.js";
import { type Parsed, parseCommandArgs } from "../args.js";
import type { Command } from "../cli.js";
import { usageError } from "../exit.js";
import {
  checkArgv,
  connect,
  nonceArg,
  orDenied,
  SOCKET_HELP,
  SOCKET_OPTION,
  scopeArg,
} from "./token-common.js";

/** Shell conventions for a command that could not be started. */
const EXIT_NOT_FOUND = 127;
const EXIT_NOT_EXECUTABLE = 126;
const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * The daemon's redemption must describe exactly what we are about to run: the token we asked
 * for, the scope we asked in, the action digest of this argv. Otherwise nothing runs.
 */
function checkRedemption(r: RedeemedToken, t: IssuedToken, scope: string, argv: readonly string[]): void {
  const mismatch = !bytesEqual(r.tokenId, t.tokenId)
    ? "token id"
    : r.scope !== scope
      ? "scope"
      : !bytesEqual(r.action, actionDigest(argv))
        ? "action digest"
        : undefined;
  if (mismatch !== undefined)
    throw new ExecgateError("verification_failed", `redemption does not match the request: ${mismatch}`);
}

/** Runs argv with inherited stdio and no shell; resolves to its exit status (signal → 128 + n). */
function runChild(argv: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit", shell: false });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    let settled = false;
    const done = (status: number): void => {
      if (settled) return;
      settled = true;
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      resolve(status);
    };
    child.once("error", (e: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return; // a failed kill(), not a failed start
      process.stderr.write(`execgate run: cannot execute ${argv[0]}: ${e.code ?? e.message}\n`);
      done(e.code === "ENOENT" ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
    });
    child.once("exit", (code, signal) => {
      done(code ?? 128 + (signal === null ? 0 : (osConstants.signals[signal] ?? 0)));
    });
  });
}

async function reportOutcome(
  client: ExecgateClient,
  p: Parsed,
  tokenId: Uint8Array,
  exitStatus: number,
  durationMs: number,
): Promise<ExecgateClient> {
  let c = client;
  // The daemon may close an idle connection while the command runs (even as we send): reconnect
  // and retry once. A duplicate report is refused by the daemon, which only costs the warning.
  for (let attempt = 0; ; attempt++) {
    try {
      if (c.closed) c = await connect(p);
      await c.report({ tokenId, exitStatus, durationMs });
      break;
    } catch (e) {
      const err = asExecgateError(e);
      if (attempt === 0 && err.code === "io_error" && c.closed && !(e instanceof ExecgateReplyError))
        continue;
      process.stderr.write(
        `execgate run: warning: the outcome was not reported: ${err.code}: ${err.message}\n`,
      );
      break;
    }
  }
  return c;
}

export const command: Command = {
  summary: "request + redeem a token for CMD, run it (no shell), report its outcome; exit with its status",
  usage:
    "--scope S [--nonce HEX] [--socket P] -- CMD [ARGS…]\n" +
    "  The token is requested for argv [CMD, ARGS…] (the daemon computes its action digest), redeemed,\n" +
    "  then CMD runs with this process's stdio and environment; SIGINT/SIGTERM are forwarded to it.\n" +
    `${SOCKET_HELP}\n` +
    "Exit: CMD's status (128 + n if killed by signal n; 127 not found, 126 not executable);\n" +
    "  1 denied (execgate: denied: <reason> on stderr; CMD does not run), 2 usage,\n" +
    "  3 daemon unreachable (CMD does not run). A failed outcome report is a warning only.",
  async run(argv) {
    const sep = argv.indexOf("--");
    if (sep < 0 || sep === argv.length - 1)
      throw usageError("give the command after --: --scope S -- CMD [ARGS…]");
    const cmd = checkArgv(argv.slice(sep + 1));
    const p = parseCommandArgs(argv.slice(0, sep), {
      scope: { type: "string" },
      nonce: { type: "string" },
      ...SOCKET_OPTION,
    });
    const scope = scopeArg(p);
    const nonce = nonceArg(p);
    let client = await connect(p);
    try {
      return await orDenied(async () => {
        const t = await client.requestToken({ scope, argv: cmd, ...(nonce ? { nonce } : {}) });
        checkRedemption(await client.redeem(t.token), t, scope, cmd);
        const started = process.hrtime.bigint();
        const exitStatus = await runChild(cmd);
        const durationMs = Number((process.hrtime.bigint() - started) / 1_000_000n);
        client = await reportOutcome(client, p, t.tokenId, exitStatus, durationMs);
        return exitStatus;
      });
    } finally {
      await client.close();
    }
  },
};
