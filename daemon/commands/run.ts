import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import {
  type ExecgateClient,
  ExecgateReplyError,
  type IssuedToken,
  type RedeemedToken,
} from "../../src/client/index.js";
import { asExecgateError, ExecgateError } from "../../src/core/errors.js";
import { bytesEqual } from "../../src/core/hex.js";
import { actionDigest } from "../../src/wire/request.js";
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
const FORWARDED_SIGNALS = ["SIGINT", "SIGQUIT", "SIGTERM"] as const;
/** Signals a terminal sends to its whole foreground process group (termios ISIG). */
const TERMINAL_SIGNALS: ReadonlySet<string> = new Set(["SIGINT", "SIGQUIT"]);

/**
 * True if this process is in the foreground process group of its controlling terminal
 * (proc_pid_stat(5): field 5 pgrp = field 8 tpgid). The child shares our group, so a Ctrl-C or
 * Ctrl-\ there reached it already, and forwarding would deliver it twice. Any doubt: false.
 */
function inTerminalForeground(): boolean {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    // comm (field 2) may hold spaces and parentheses: count fields from the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pgrp = Number(f[2]);
    const tpgid = Number(f[5]);
    return Number.isSafeInteger(tpgid) && tpgid > 0 && tpgid === pgrp;
  } catch {
    return false;
  }
}

/**
 * What spawn() cannot execute at all (it throws ERR_INVALID_ARG_VALUE): an empty program name,
 * a NUL in any word. Refused as usage before a token is requested, not after it was redeemed.
 */
function checkExecutable(argv: readonly string[]): readonly string[] {
  if (argv[0] === "") throw usageError("the command name is empty");
  if (argv.some((a) => a.includes("\0"))) throw usageError("the command contains a NUL character");
  return argv;
}

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

/** How the command ended: its exit code, or the number of the signal that killed it. */
type Outcome = { readonly code: number } | { readonly signal: number };

/** Runs argv with inherited stdio and no shell, in our process group (so it keeps the terminal). */
function runChild(argv: readonly string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit", shell: false });
    const forward = (sig: NodeJS.Signals): void => {
      if (TERMINAL_SIGNALS.has(sig) && inTerminalForeground()) return;
      child.kill(sig); // EPERM is an "error" event (below), not a throw
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    let settled = false;
    const done = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
      resolve(outcome);
    };
    // on, not once: every failed kill() emits one, and an unhandled "error" would throw.
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) {
        // A failed kill() (EPERM: a set-user-ID command), not a failed start: the command runs on.
        process.stderr.write(`execgate run: warning: cannot forward a signal: ${e.code ?? e.message}\n`);
        return;
      }
      process.stderr.write(`execgate run: cannot execute ${argv[0]}: ${e.code ?? e.message}\n`);
      done({ code: e.code === "ENOENT" ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE });
    });
    child.once("exit", (code, signal) => {
      done(signal !== null ? { signal: osConstants.signals[signal] ?? 0 } : { code: code ?? 0 });
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
    "  then CMD runs with this process's stdio and environment; SIGTERM, SIGINT and SIGQUIT are\n" +
    "  forwarded to it (SIGINT/SIGQUIT not while in the terminal's foreground: CMD gets those from\n" +
    "  the terminal itself).\n" +
    `${SOCKET_HELP}\n` +
    "Exit: CMD's status (128 + n if killed by signal n, reported as -n; 127 not found, 126 not\n" +
    "  executable);\n" +
    "  1 denied (execgate: denied: <reason> on stderr; CMD does not run), 2 usage,\n" +
    "  3 daemon unreachable (CMD does not run). A failed outcome report is a warning only.",
  async run(argv) {
    const sep = argv.indexOf("--");
    if (sep < 0 || sep === argv.length - 1)
      throw usageError("give the command after --: --scope S -- CMD [ARGS…]");
    const cmd = checkExecutable(checkArgv(argv.slice(sep + 1)));
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
        const outcome = await runChild(cmd);
        const durationMs = Number((process.hrtime.bigint() - started) / 1_000_000n);
        // Reported: the exit code, or −n for a death by signal n (docs/protocol.md); our own
        // status follows the shell's 128 + n.
        const reported = "signal" in outcome ? -outcome.signal : outcome.code;
        client = await reportOutcome(client, p, t.tokenId, reported, durationMs);
        return "signal" in outcome ? 128 + outcome.signal : outcome.code;
      });
    } finally {
      await client.close();
    }
  },
};
