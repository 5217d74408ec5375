import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { chown, mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NOBODY, NOGROUP } from "../fixtures/peer/unix-peer.js";

/*
 * The unit's identity and capability settings, reproduced with setpriv (no systemd as PID 1
 * here): a non-root user, NoNewPrivileges, a bounding set of CAP_SYS_PTRACE alone and that one
 * capability ambient — as User=, NoNewPrivileges=, CapabilityBoundingSet= and
 * AmbientCapabilities= give the daemon. Under them the daemon's own peer identification
 * (dist/src/peer) identifies a caller of another uid, executable digest included; with no
 * capability it cannot (docs/operations.md, "Hardening and its trade-offs").
 */

const SETPRIV = "/usr/bin/setpriv";
const hasSetpriv = (() => {
  try {
    accessSync(SETPRIV, constants.X_OK);
    return true;
  } catch {
    return false;
  }
})();
if (!hasSetpriv && process.env.CI === "true")
  throw new Error(`CI=true but ${SETPRIV} is missing (util-linux)`);

const IDENTIFY = `
import { createServer } from "node:net";
const { identifyPeer } = await import(process.argv[2]);
const server = createServer({ pauseOnConnect: true }, async (s) => {
  try {
    const id = await identifyPeer(s);
    console.log(JSON.stringify({ ok: true, uid: id.uid, pid: id.pid, exe: id.exe, exeSha256: id.exeSha256 }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code, errno: e.detail?.errno, message: e.message }));
  }
  s.destroy();
  server.close();
});
server.listen(process.argv[3], () => console.log("listening"));
`;

let dir: string;
beforeAll(async () => {
  // Not under EXECGATE_TEST_RUN_DIR (0700 root): the unprivileged "daemon" must reach it.
  dir = await mkdtemp(join(tmpdir(), "execgate-caps-"));
  await chown(dir, NOBODY, NOGROUP);
  await writeFile(join(dir, "identify.mjs"), IDENTIFY, { mode: 0o644 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the identification as nobody with `caps`, connects from this (root) process, returns its verdict. */
async function identifyAs(caps: readonly string[]): Promise<Record<string, unknown>> {
  const sock = join(dir, `s-${caps.length}.sock`);
  const child: ChildProcess = spawn(
    SETPRIV,
    [
      `--reuid=${NOBODY}`,
      `--regid=${NOGROUP}`,
      "--clear-groups",
      "--no-new-privs",
      ...caps,
      "--",
      process.execPath,
      join(dir, "identify.mjs"),
      resolve("dist/src/peer/index.js"),
      sock,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const lines = createInterface({ input: child.stdout! });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.value !== "listening") throw new Error(`identification did not start: ${stderr}`);
  const c = connect(sock);
  try {
    const verdict = await it.next();
    return JSON.parse(String(verdict.value)) as Record<string, unknown>;
  } finally {
    c.destroy();
    child.kill();
  }
}

describe.runIf(hasSetpriv || process.env.CI === "true")("the unit's capability set", () => {
  it("nobody + NoNewPrivileges + CAP_SYS_PTRACE (bounding and ambient) identifies a root caller and hashes its executable", async () => {
    const v = await identifyAs([
      "--inh-caps=+sys_ptrace",
      "--ambient-caps=+sys_ptrace",
      "--bounding-set=-all,+sys_ptrace",
    ]);
    const exe = await realpath(process.execPath);
    expect(v).toMatchObject({ ok: true, uid: 0, pid: process.pid, exe });
    expect(v.exeSha256).toBe(
      createHash("sha256")
        .update(await readFile(exe))
        .digest("hex"),
    );
  });

  it("without the capability (CapabilityBoundingSet= empty) the same caller cannot be identified", async () => {
    const v = await identifyAs(["--inh-caps=-all", "--bounding-set=-all"]);
    expect(v).toMatchObject({ ok: false, code: "io_error", errno: "EACCES" });
    expect(String(v.message)).toContain("CAP_SYS_PTRACE");
  });
});
