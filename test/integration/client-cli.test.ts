import { ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type EpochBinding, encodeEpochBinding, epochHash } from "../../src/attest/binding.js";
import { evaluateEpoch } from "../../src/attest/epoch.js";
import type { TokenClaims } from "../../src/token/claims.js";
import { issueToken } from "../../src/token/token.js";
import { actionDigest, type Request } from "../../src/wire/request.js";
import { execgate } from "../helpers/cli.js";
import {
  type FakeDaemon,
  grantingHandler,
  type IssuedRecord,
  startFakeDaemon,
} from "../helpers/fake-daemon.js";

/*
 * The executor commands as real processes (the built CLI) against the in-test fake daemon. The
 * fake only answers the protocol; what is proven here is the CLI's side: the command runs only
 * after a granted and matching redemption, its status passes through, the outcome is reported.
 */

const NODE = process.execPath;
const PYTHON = "/usr/bin/python3";
/** node's arguments for `execgate run --scope gpu -- node -e SOURCE`. */
const runCommand = (source: string): string[] => [
  resolve("dist/daemon/cli.js"),
  "run",
  "--scope",
  "gpu",
  "--",
  NODE,
  "-e",
  source,
];
const tmp = mkdtempSync(join(tmpdir(), "execgate-client-cli-"));
let daemon: FakeDaemon;
let issued: Map<string, IssuedRecord>;

beforeAll(async () => {
  const g = grantingHandler(["gpu"]);
  issued = g.issued;
  daemon = await startFakeDaemon(g.handler);
});
afterAll(async () => {
  await daemon.close();
});

const env = () => ({ EXECGATE_SOCKET: daemon.path });

/** A node one-liner that creates `marker` (proof that it ran) then exits with `code`. */
function writeAndExit(marker: string, code: number): string[] {
  return [NODE, "-e", `require("fs").writeFileSync(${JSON.stringify(marker)}, "ran"); process.exit(${code})`];
}

function since(n: number): Request[] {
  return daemon.requests.slice(n);
}

describe("execgate run", () => {
  it("runs the command after request + redeem, passes its status through, reports it", async () => {
    const marker = join(tmp, "allowed");
    const cmd = writeAndExit(marker, 7);
    const n = daemon.requests.length;
    const r = await execgate(
      ["run", "--scope", "gpu", "--nonce", "00112233445566778899", "--", ...cmd],
      env(),
    );
    expect(r.code).toBe(7);
    expect(readFileSync(marker, "utf8")).toBe("ran");
    const [req, redeem, report, ...rest] = since(n);
    expect(rest).toEqual([]);
    expect(req).toMatchObject({
      op: "token.request",
      args: { scope: "gpu", argv: cmd, action: actionDigest(cmd) },
    });
    expect(redeem?.op).toBe("token.redeem");
    const rec =
      redeem?.op === "token.redeem" ? issued.get(Buffer.from(redeem.args.token).toString("hex")) : undefined;
    expect(rec?.redeemed).toBe(true);
    expect(report).toMatchObject({ op: "execution.report", args: { tokenId: rec?.tokenId, exitStatus: 7 } });
    expect(daemon.rejected).toEqual([]);
  });

  it("exit 0 passes through too", async () => {
    const n = daemon.requests.length;
    const r = await execgate(["run", "--scope", "gpu", "--", NODE, "-e", ""], env());
    expect(r.code).toBe(0);
    expect(since(n).at(-1)).toMatchObject({ op: "execution.report", args: { exitStatus: 0 } });
  });

  it("a denial exits 1 with the reason and never runs the command", async () => {
    const marker = join(tmp, "denied");
    const n = daemon.requests.length;
    const r = await execgate(["run", "--scope", "other", "--", ...writeAndExit(marker, 0)], env());
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("execgate: denied: scope_not_allowed\n");
    expect(existsSync(marker)).toBe(false);
    expect(since(n).map((q) => q.op)).toEqual(["token.request"]);
  });

  it("an unreachable daemon exits 3 and never runs the command", async () => {
    const marker = join(tmp, "unreachable");
    const r = await execgate(["run", "--scope", "gpu", "--", ...writeAndExit(marker, 0)], {
      EXECGATE_SOCKET: join(tmp, "no-daemon.sock"),
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/io_error: cannot connect to .*no-daemon\.sock: ENOENT/);
    expect(existsSync(marker)).toBe(false);
  });

  it("--socket wins over EXECGATE_SOCKET", async () => {
    const r = await execgate(
      ["run", "--scope", "gpu", "--socket", daemon.path, "--", NODE, "-e", "process.exit(4)"],
      {
        EXECGATE_SOCKET: join(tmp, "no-daemon.sock"),
      },
    );
    expect(r.code).toBe(4);
  });

  it("a redemption for another action is refused before running", async () => {
    const liar = await startFakeDaemon((req, conn) => {
      if (req.op === "token.request")
        conn.ok(req.id, { token: Uint8Array.of(1), token_id: new Uint8Array(16), expires: 1 });
      else if (req.op === "token.redeem")
        conn.ok(req.id, {
          token_id: new Uint8Array(16),
          scope: "gpu",
          action: actionDigest(["something", "else"]),
        });
    });
    try {
      const marker = join(tmp, "mismatch");
      const r = await execgate(["run", "--scope", "gpu", "--", ...writeAndExit(marker, 0)], {
        EXECGATE_SOCKET: liar.path,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/verification_failed: redemption does not match the request: action digest/);
      expect(existsSync(marker)).toBe(false);
      expect(liar.requests.map((q) => q.op)).toEqual(["token.request", "token.redeem"]);
    } finally {
      await liar.close();
    }
  });

  it("reconnects to report when the daemon closed the idle connection while the command ran", async () => {
    const g = grantingHandler(["gpu"]);
    const idle = await startFakeDaemon(async (req, conn) => {
      await g.handler(req, conn);
      if (req.op === "token.redeem") conn.close();
    });
    try {
      const r = await execgate(["run", "--scope", "gpu", "--", NODE, "-e", "process.exit(5)"], {
        EXECGATE_SOCKET: idle.path,
      });
      expect(r.code).toBe(5);
      expect(r.stderr).toBe("");
      expect(idle.requests.map((q) => q.op)).toEqual(["token.request", "token.redeem", "execution.report"]);
    } finally {
      await idle.close();
    }
  });

  it("a daemon gone for good by report time: the command's status still, and a warning", async () => {
    const g = grantingHandler(["gpu"]);
    let gone: FakeDaemon | undefined;
    gone = await startFakeDaemon(async (req, conn) => {
      await g.handler(req, conn);
      if (req.op === "token.redeem") {
        await gone?.close();
        gone = undefined;
      }
    });
    const path = gone.path;
    try {
      const r = await execgate(["run", "--scope", "gpu", "--", NODE, "-e", "process.exit(6)"], {
        EXECGATE_SOCKET: path,
      });
      expect(r.code).toBe(6);
      expect(r.stderr).toMatch(/warning: the outcome was not reported: io_error/);
    } finally {
      await gone?.close();
    }
  });

  it("a command killed by signal n exits 128 + n and is reported as −n", async () => {
    const n = daemon.requests.length;
    const r = await execgate(
      ["run", "--scope", "gpu", "--", NODE, "-e", "process.kill(process.pid, 'SIGKILL')"],
      env(),
    );
    expect(r.code).toBe(137);
    expect(since(n).at(-1)).toMatchObject({ op: "execution.report", args: { exitStatus: -9 } });
    // An exit code of 137 is not a signal.
    const m = daemon.requests.length;
    expect(
      (await execgate(["run", "--scope", "gpu", "--", NODE, "-e", "process.exit(137)"], env())).code,
    ).toBe(137);
    expect(since(m).at(-1)).toMatchObject({ op: "execution.report", args: { exitStatus: 137 } });
  });

  it("a command that does not exist exits 127 and is reported", async () => {
    const n = daemon.requests.length;
    const r = await execgate(["run", "--scope", "gpu", "--", join(tmp, "no-such-program")], env());
    expect(r.code).toBe(127);
    expect(r.stderr).toMatch(/cannot execute .*no-such-program: ENOENT/);
    expect(since(n).at(-1)).toMatchObject({ op: "execution.report", args: { exitStatus: 127 } });
  });

  it.each([
    ["SIGTERM", 143],
    ["SIGINT", 130],
    ["SIGQUIT", 131],
  ] as const)("forwards %s to the command", async (signal, status) => {
    const ready = join(tmp, `ready-${signal}`);
    const cli = spawn(
      NODE,
      runCommand(`require("fs").writeFileSync(${JSON.stringify(ready)}, ""); setInterval(() => {}, 1000)`),
      // detached: its own session, without a controlling terminal even when the tests have one
      { env: { PATH: process.env.PATH, ...env() }, stdio: "ignore", detached: true },
    );
    const exited = new Promise<number | null>((res) => cli.once("exit", (code) => res(code)));
    try {
      while (!existsSync(ready)) await sleep(20);
      const n = daemon.requests.length;
      cli.kill(signal);
      expect(await exited).toBe(status);
      expect(since(n)).toMatchObject([{ op: "execution.report", args: { exitStatus: 128 - status } }]);
    } finally {
      // run and the command share run's process group (detached: run leads it): nothing outlives
      // a failed assertion.
      try {
        process.kill(-cli.pid!, "SIGKILL");
      } catch {
        // gone already
      }
    }
  });

  // python3 (for its pty module) is a build prerequisite: setup.sh installs it, node-gyp needs it.
  it("a Ctrl-C on its terminal reaches the command once, not again forwarded", async () => {
    // python's pty.fork gives run a terminal whose foreground group it and the command share; ^C
    // there is SIGINT to both. run is stopped meanwhile, so the command has handled that SIGINT
    // before run could forward another (which the kernel would otherwise merge with a pending one).
    // Then run gets SIGCONT and SIGTERM: any SIGINT it forwards reaches the command before the
    // SIGTERM, on which it exits with 10 + the number of SIGINTs it saw.
    const ready = join(tmp, "tty-ready");
    const got = join(tmp, "tty-got");
    const child = [
      "const fs = require('fs'); let n = 0;",
      `process.on('SIGINT', () => { n++; fs.writeFileSync(${JSON.stringify(got)}, String(n)); });`,
      "process.on('SIGTERM', () => process.exit(10 + n));",
      `fs.writeFileSync(${JSON.stringify(ready)}, ''); setInterval(() => {}, 1000);`,
    ].join(" ");
    const driver = [
      "import os, pty, signal, sys, time",
      "ready, got, argv = sys.argv[1], sys.argv[2], sys.argv[3:]",
      "pid, fd = pty.fork()",
      "if pid == 0:",
      "    os.execv(argv[0], argv)",
      "def wait(p):",
      "    while not os.path.exists(p): time.sleep(0.02)",
      "wait(ready)",
      "os.kill(pid, signal.SIGSTOP)",
      "while open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'T': time.sleep(0.02)",
      "os.write(fd, b'\\x03')",
      "wait(got)",
      "os.kill(pid, signal.SIGCONT)",
      "os.kill(pid, signal.SIGTERM)",
      "while True:",
      "    try:",
      "        if not os.read(fd, 4096): break",
      "    except OSError:",
      "        break",
      "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))",
    ].join("\n");
    const n = daemon.requests.length;
    const py = spawn(PYTHON, ["-c", driver, ready, got, NODE, ...runCommand(child)], {
      env: { PATH: process.env.PATH, ...env() },
      stdio: "ignore",
      detached: true,
    });
    const code = await new Promise<number | null>((res) => py.once("exit", (c) => res(c)));
    expect(readFileSync(got, "utf8")).toBe("1");
    expect(code).toBe(11);
    expect(since(n).at(-1)).toMatchObject({ op: "execution.report", args: { exitStatus: 11 } });
  });

  it("a forward that fails (kill() EPERM) only warns, however often: the command runs on", async () => {
    const { command } = await import("../../daemon/commands/run.js");
    const ready = join(tmp, "ready-eperm");
    const done = command.run([
      "--scope",
      "gpu",
      "--socket",
      daemon.path,
      "--",
      NODE,
      "-e",
      `require("fs").writeFileSync(${JSON.stringify(ready)}, ""); setInterval(() => {}, 1000)`,
    ]);
    while (!existsSync(ready)) await sleep(20);
    // kill() reports EPERM (a setuid command, say) as an "error" event on the child.
    const kill = vi.spyOn(ChildProcess.prototype, "kill").mockImplementation(function (this: ChildProcess) {
      this.emit("error", Object.assign(new Error("kill EPERM"), { code: "EPERM", syscall: "kill" }));
      return false;
    });
    try {
      process.emit("SIGTERM", "SIGTERM");
      process.emit("SIGTERM", "SIGTERM");
      expect(kill).toHaveBeenCalledTimes(2);
    } finally {
      kill.mockRestore();
    }
    process.emit("SIGTERM", "SIGTERM"); // now for real
    expect(await done).toBe(143);
  });

  it("usage errors exit 2 without contacting the daemon", async () => {
    const n = daemon.requests.length;
    expect((await execgate(["run", "--scope", "gpu"], env())).code).toBe(2);
    expect((await execgate(["run", "--", "true"], env())).code).toBe(2);
    expect((await execgate(["run", "--scope", "bad scope", "--", "true"], env())).code).toBe(2);
    expect((await execgate(["run", "--scope", "gpu", "--nonce", "zz", "--", "true"], env())).code).toBe(2);
    const long = Array.from({ length: 257 }, () => "x");
    expect((await execgate(["run", "--scope", "gpu", "--", "echo", ...long], env())).code).toBe(2);
    // What spawn cannot execute is refused before a token is requested, not after it was redeemed.
    const empty = await execgate(["run", "--scope", "gpu", "--", "", "x"], env());
    expect([empty.code, empty.stderr]).toEqual([2, expect.stringMatching(/command name is empty/)]);
    // A NUL cannot come through execve; the command is called in-process for it.
    const { command } = await import("../../daemon/commands/run.js");
    await expect(
      command.run(["--scope", "gpu", "--socket", daemon.path, "--", "echo", "a\0b"]),
    ).rejects.toMatchObject({ code: "usage", message: expect.stringMatching(/NUL/) });
    expect(daemon.requests.length).toBe(n);
  });
});

describe("execgate token request | redeem", () => {
  it("request prints base64url; redeem redeems once, then is denied", async () => {
    const req = await execgate(
      ["token", "request", "--scope", "gpu", "--argv-json", '["nvidia-smi"]'],
      env(),
    );
    expect(req.code).toBe(0);
    const token = req.stdout.trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    const red = await execgate(["token", "redeem", "--json", "--", token], env());
    expect(red.code).toBe(0);
    expect(JSON.parse(red.stdout)).toMatchObject({
      scope: "gpu",
      action: Buffer.from(actionDigest(["nvidia-smi"])).toString("hex"),
    });
    const again = await execgate(["token", "redeem", token], env());
    expect(again.code).toBe(1);
    expect(again.stderr).toBe("execgate: denied: token_replayed\n");
  });

  it("--out writes raw bytes that redeem --in reads; --json reports the id", async () => {
    const out = join(tmp, "token.bin");
    const action = "ab".repeat(32);
    const req = await execgate(
      ["token", "request", "--scope", "gpu", "--action", action, "--out", out, "--json"],
      env(),
    );
    expect(req.code).toBe(0);
    const j = JSON.parse(req.stdout);
    expect(j).toMatchObject({ out, expiresAt: 2_000_000_000 });
    expect(j.tokenId).toMatch(/^[0-9a-f]{32}$/);
    expect(issued.has(readFileSync(out).toString("hex"))).toBe(true);
    const red = await execgate(["token", "redeem", "--in", out, "--json"], env());
    expect(JSON.parse(red.stdout)).toEqual({ tokenId: j.tokenId, scope: "gpu", action });
  });

  it("redeem --in also reads a file of base64url text", async () => {
    const req = await execgate(["token", "request", "--scope", "gpu", "--argv-json", '["a","b"]'], env());
    const file = join(tmp, "token.txt");
    writeFileSync(file, req.stdout);
    const red = await execgate(["token", "redeem", "--in", file], env());
    expect(red.code).toBe(0);
    expect(red.stdout).toMatch(/^redeemed token [0-9a-f]{32}: scope gpu, action [0-9a-f]{64}\n$/);
  });

  it("a denied request exits 1; bad options exit 2", async () => {
    const d = await execgate(["token", "request", "--scope", "nope", "--argv-json", '["x"]'], env());
    expect(d.code).toBe(1);
    expect(d.stderr).toBe("execgate: denied: scope_not_allowed\n");
    expect((await execgate(["token", "request", "--scope", "gpu"], env())).code).toBe(2);
    expect((await execgate(["token", "request", "--scope", "gpu", "--argv-json", "[1]"], env())).code).toBe(
      2,
    );
    expect((await execgate(["token", "request", "--scope", "gpu", "--action", "abcd"], env())).code).toBe(2);
    expect((await execgate(["token", "redeem", "not base64!"], env())).code).toBe(2);
  });
});

describe("execgate status", () => {
  it("--json prints the status reply; the summary prints every field", async () => {
    const j = await execgate(["status", "--json"], env());
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual({
      state: "ready",
      epoch: 7,
      evidence_age_ms: 120,
      counters: { issued: 3 },
      denials: {},
    });
    const h = await execgate(["status", "--socket", daemon.path]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("state: ready");
    expect(h.stdout).toMatch(/counters:\n\s+issued: 3/);
    expect(h.stdout).toContain("denials: (none)");
  });

  it("an unreachable daemon exits 3", async () => {
    expect((await execgate(["status"], { EXECGATE_SOCKET: join(tmp, "none.sock") })).code).toBe(3);
  });
});

describe("execgate token verify (offline)", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const keyFile = join(tmp, "issuer.pem");
  writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));
  const claims: TokenClaims = {
    iss: "execgate",
    sub: "gpu",
    aud: "host-a",
    exp: 1_700_000_060,
    nbf: 1_700_000_000,
    iat: 1_700_000_000,
    cti: new Uint8Array(16).fill(1),
    ueid: new Uint8Array(33).fill(2),
    scope: "gpu",
    action: actionDigest(["true"]),
    peer: { uid: 1000, gid: 1000, pid: 42, exe: new Uint8Array(32) },
    epoch: new Uint8Array(32),
    pcrDigest: new Uint8Array(32),
    policyDigest: new Uint8Array(32),
    bootId: "boot-1",
    lineage: [5, new Uint8Array(32)],
  };
  const token = Buffer.from(issueToken(claims, privateKey)).toString("base64url");
  const verify = (...extra: string[]) =>
    execgate(["token", "verify", token, "--issuer-key", keyFile, "--audience", "host-a", ...extra]);

  it("valid within [nbf, exp): exit 0 with the claims", async () => {
    const r = await verify("--now", "1700000030", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      valid: true,
      claims: { scope: "gpu", cti: "01".repeat(16), lineage: { index: 5 } },
    });
  });

  it("expired, wrong audience, wrong key: exit 1 with the reason", async () => {
    const expired = await verify("--now", "1700000060", "--json");
    expect(expired.code).toBe(1);
    expect(JSON.parse(expired.stdout)).toMatchObject({ valid: false, reason: "token_expired" });
    const aud = await execgate([
      "token",
      "verify",
      token,
      "--issuer-key",
      keyFile,
      "--audience",
      "host-b",
      "--now",
      "1700000030",
    ]);
    expect(aud.code).toBe(1);
    expect(aud.stderr).toMatch(/^token INVALID: token_wrong_audience/);
    const other = join(tmp, "other.pem");
    writeFileSync(other, generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }));
    const sig = await execgate([
      "token",
      "verify",
      token,
      "--issuer-key",
      other,
      "--audience",
      "host-a",
      "--now",
      "1700000030",
    ]);
    expect(sig.code).toBe(1);
    expect(sig.stderr).toMatch(/token_signature_invalid/);
    // Fixed bytes: random base64url may begin with "-" and be read as a flag (a usage error, exit 2).
    const junk = Buffer.from("forty bytes of anything but a COSE_Sign1").toString("base64url");
    const mal = await execgate([
      "token",
      "verify",
      junk,
      "--issuer-key",
      keyFile,
      "--audience",
      "host-a",
      "--json",
    ]);
    expect(mal.code).toBe(1);
    expect(JSON.parse(mal.stdout).reason).toBe("token_malformed");
  });

  it("a missing key file exits 3; no audience exits 2", async () => {
    expect(
      (await execgate(["token", "verify", token, "--issuer-key", join(tmp, "nope.pem"), "--audience", "a"]))
        .code,
    ).toBe(3);
    expect((await execgate(["token", "verify", token, "--issuer-key", keyFile])).code).toBe(2);
  });

  // An HSM-rooted epoch (as the daemon writes it with an HSM root, no TPM): the binding names
  // the issuer key and the HSM signs the binding. No quote is involved, so the CLI must not say so.
  describe("--hsm-pub: bound to an HSM-signed epoch, not to a quote", () => {
    const hsm = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const binding: EpochBinding = {
      seq: 1,
      prev: new Uint8Array(32),
      issuer: new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url")),
      checkpoint: { size: 0, root: new Uint8Array(32) },
      bootId: "boot-1",
      nonce: new Uint8Array(32).fill(9),
    };
    const hsmSig = sign("sha256", encodeEpochBinding(binding), {
      key: hsm.privateKey,
      dsaEncoding: "ieee-p1363",
    });
    const record = evaluateEpoch({
      binding,
      hsm: { signature: new Uint8Array(hsmSig), publicKey: hsm.publicKey },
      policy: { pcrs: {}, eventlog: undefined, ima: undefined },
      policyDigest: new Uint8Array(32),
      startedAtMs: 0,
      startedMonoUs: 0,
      verifiedAtMs: 0,
    }).record;
    const f = (n: string) => join(tmp, n);
    writeFileSync(f("hsm-epoch.cbor"), record);
    writeFileSync(f("hsm-epoch.sig"), hsmSig);
    writeFileSync(f("hsm-pub.pem"), hsm.publicKey.export({ type: "spki", format: "pem" }));
    const hsmToken = Buffer.from(issueToken({ ...claims, epoch: epochHash(binding) }, privateKey)).toString(
      "base64url",
    );
    const hsmArgs = [
      "token",
      "verify",
      hsmToken,
      "--epoch-record",
      f("hsm-epoch.cbor"),
      "--hsm-pub",
      f("hsm-pub.pem"),
      "--hsm-signature",
      f("hsm-epoch.sig"),
      "--audience",
      "host-a",
      "--now",
      "1700000030",
    ];

    it("says so in text and JSON (boundToQuote false, boundTo hsm-signature)", async () => {
      const text = await execgate(hsmArgs);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/^token valid \(bound to an HSM-signed epoch\): /);
      expect(text.stdout).not.toContain("TPM quote");
      const json = await execgate([...hsmArgs, "--json"]);
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({
        valid: true,
        boundToQuote: false,
        boundTo: "hsm-signature",
      });
      const bare = await verify("--now", "1700000030", "--json");
      expect(JSON.parse(bare.stdout)).toMatchObject({ valid: true, boundToQuote: false, boundTo: "none" });
    });

    it("--ak-pub with --hsm-pub is a usage error (exit 2), not an ignored flag", async () => {
      const r = await execgate([...hsmArgs, "--ak-pub", f("hsm-pub.pem")]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--ak-pub .* and --hsm-pub .* give one/);
      expect(r.stdout).toBe("");
    });
  });
});
