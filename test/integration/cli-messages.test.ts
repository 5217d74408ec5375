import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecgateClient, ExecgateError } from "../../src/client/index.js";
import { execgate } from "../helpers/cli.js";
import { type FakeDaemon, grantingHandler, startFakeDaemon } from "../helpers/fake-daemon.js";

/* What a new user meets in the first hour: messages in our words, typed client errors, offline digests. */

const tmp = mkdtempSync(join(tmpdir(), "execgate-cli-messages-"));
let daemon: FakeDaemon;
beforeAll(async () => {
  daemon = await startFakeDaemon(grantingHandler(["gpu"]).handler);
});
afterAll(async () => {
  await daemon.close();
});

describe("usage messages are ours, not Node's parseArgs text", () => {
  it("an unknown flag names it and points to --help (exit 2)", async () => {
    const r = await execgate(["audit", "consistency", "--bogus", "x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "execgate audit consistency: usage: unknown option --bogus (--help lists the options)\n",
    );
    expect(r.stderr).not.toMatch(/positional argument starting with/);
  });

  it("a flag without its value, a value given to a switch, a stray argument", async () => {
    const missing = await execgate(["audit", "consistency", "--old-checkpoint"]);
    expect(missing.stderr).toContain("usage: --old-checkpoint needs a value");
    const valued = await execgate(["status", "--json=yes"]);
    expect(valued.stderr).toContain("usage: --json takes no value");
    const stray = await execgate(["token", "request", "--scope", "gpu", "extra"]);
    expect(stray.stderr).toContain("usage: unexpected argument extra: this command takes options only");
    for (const r of [missing, valued, stray]) expect(r.code).toBe(2);
  });

  it("run without --scope says --scope is required", async () => {
    const r = await execgate(["run", "--", "true"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("execgate run: usage: --scope is required (the scope to ask the policy for)\n");
  });
});

describe("cannot connect: whether the daemon runs, and which socket was tried", () => {
  it("no socket file: not running, names the path and how to point elsewhere", async () => {
    const sock = join(tmp, "absent.sock");
    const r = await execgate(["status"], { EXECGATE_SOCKET: sock });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      `cannot connect to ${sock}: ENOENT (no socket there: the daemon is not running`,
    );
    expect(r.stderr).toContain("--socket / $EXECGATE_SOCKET");
  });

  it("a stale socket file nobody accepts on: the daemon is not running", async () => {
    // A socket bound by a process that has exited: the file stays, nothing listens.
    const stale = join(tmp, "stale.sock");
    const py = spawnSync("python3", [
      "-c",
      "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
      stale,
    ]);
    expect(py.status).toBe(0);
    const r = await execgate(["status"], { EXECGATE_SOCKET: stale });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`cannot connect to ${stale}: ECONNREFUSED (a socket file but nobody accepts`);
  });
});

describe("token request --json", () => {
  it("a denial is JSON on stdout too (and the usual line on stderr), exit 1", async () => {
    const r = await execgate(["token", "request", "--scope", "nope", "--argv-json", '["x"]', "--json"], {
      EXECGATE_SOCKET: daemon.path,
    });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ denied: true, reason: "scope_not_allowed" });
    expect(r.stderr).toBe("execgate: denied: scope_not_allowed\n");
  });
});

describe("client module: typed usage errors naming the field", () => {
  it("exports ExecgateError; connect({ socketPath }) works and a bad socketPath is a usage error", async () => {
    const c = await ExecgateClient.connect({ socketPath: daemon.path });
    await c.close();
    for (const bad of [{ socketPath: "" }, { socketPath: 42 as unknown as string }, { timeoutMs: -1 }]) {
      const e = await ExecgateClient.connect(bad).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ExecgateError);
      expect(e).toMatchObject({ code: "usage" });
    }
  });

  it("a request without argv (or action) names the field and sends nothing", async () => {
    const c = await ExecgateClient.connect(daemon.path);
    try {
      const before = daemon.requests.length;
      const none = await c.requestToken({ scope: "gpu" } as never).catch((x: unknown) => x);
      expect(none).toMatchObject({ code: "usage" });
      expect((none as Error).message).toMatch(/^argv is required/);
      const notArray = await c.requestToken({ scope: "gpu", argv: "ls" } as never).catch((x: unknown) => x);
      expect((notArray as Error).message).toMatch(/^argv must be a non-empty array of strings/);
      const noScope = await c.requestToken({ argv: ["x"] } as never).catch((x: unknown) => x);
      expect((noScope as Error).message).toMatch(/^scope is required/);
      expect(daemon.requests.length).toBe(before);
    } finally {
      await c.close();
    }
  });
});

describe("execgate action-digest", () => {
  /** Deterministic CBOR of an array of short text strings, written out by hand (RFC 8949 §3.1). */
  function cborTextArray(words: readonly string[]): Buffer {
    const parts = [Buffer.from([0x80 | words.length])];
    for (const w of words) {
      const b = Buffer.from(w, "utf8");
      parts.push(Buffer.from([0x60 | b.length]), b);
    }
    return Buffer.concat(parts);
  }

  it("prints the SHA-256 of the argv's deterministic CBOR array: what a policy's actions list holds", async () => {
    const argv = ["/usr/bin/python3", "train.py", "--epochs", "3"];
    const expected = createHash("sha256").update(cborTextArray(argv)).digest("hex");
    const r = await execgate(["action-digest", "--", ...argv]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${expected}\n`);
    const j = await execgate(["action-digest", "--json", "--", ...argv]);
    expect(JSON.parse(j.stdout)).toEqual({ argv, action: expected });
  });

  it("without a command it is a usage error", async () => {
    const r = await execgate(["action-digest"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("give the command after --");
  });
});

describe("policy check without evidence", () => {
  it("says which checks it could not run (SKIP, naming the flag), not FAIL and deny", async () => {
    const r = await execgate(["policy", "check", "--policy", "examples/policy.toml"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^SKIP {2}pcrs\.sha256\.0: no --pcrs given$/m);
    expect(r.stdout).toMatch(/^SKIP {2}eventlog\.replay: no --pcrs or --eventlog given$/m);
    expect(r.stdout).not.toMatch(/^FAIL|PCR not in the quote|result: deny/m);
    expect(r.stdout).toMatch(/^result: allow as far as checked \(\d+ check\(s\) not run/m);
    const j = await execgate(["policy", "check", "--policy", "examples/policy.toml", "--json"]);
    const out = JSON.parse(j.stdout) as { ok: boolean; skipped: number };
    expect(out.ok).toBe(true);
    expect(out.skipped).toBeGreaterThan(0);
  });
});
