import { spawn } from "node:child_process";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Entry } from "../../src/lineage/entry.js";
import { execgate } from "../helpers/cli.js";
import { lineageEntries, startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/*
 * Lineage growth from a local user the policy does not know (issue 14, part 3): a real process of
 * uid 65534 floods the real daemon's socket. Its first denial per reason is recorded in full, the
 * rest counted into one denial_repeats entry written at stop; every denial is accounted for and the
 * exported log verifies.
 */

const NOBODY = 65534;
const REQUESTS = 600;
const OVERSIZED = 5;

/**
 * Run as nobody: REQUESTS pipelined token requests on one connection, then OVERSIZED connections
 * that each send only a length header over the daemon's frame limit. Prints the reasons it got.
 */
const FLOOD = `
import { connect } from "node:net";
const { ExecgateClient, ExecgateDenied } = await import(process.env.CLIENT);
const socket = process.env.EXECGATE_SOCKET;
const reasons = {};
const count = (r) => { reasons[r] = (reasons[r] ?? 0) + 1; };
const c = await ExecgateClient.connect(socket);
await Promise.all(Array.from({ length: ${REQUESTS} }, () =>
  c.requestToken({ scope: "dev", argv: ["/bin/true"] }).then(
    () => count("allowed"),
    (e) => count(e instanceof ExecgateDenied ? e.reason : "error: " + e.message),
  )));
await c.close();
const oversized = [];
for (let i = 0; i < ${OVERSIZED}; i++) {
  const s = connect({ path: socket });
  const header = Buffer.alloc(4);
  header.writeUInt32BE(65_537);
  s.on("connect", () => s.write(header));
  let reply = Buffer.alloc(0);
  s.on("data", (b) => { reply = Buffer.concat([reply, b]); });
  s.on("error", () => undefined);
  await new Promise((r) => s.once("close", r));
  oversized.push(reply.length);
}
process.stdout.write(JSON.stringify({ reasons, oversized }));
`;

function asNobody(d: TestDaemon): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", FLOOD], {
      uid: NOBODY,
      gid: NOBODY,
      env: {
        EXECGATE_SOCKET: d.socket,
        CLIENT: pathToFileURL(resolve("dist/src/client/index.js")).href,
        PATH: process.env.PATH,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    p.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    p.stderr.on("data", (b: Buffer) => {
      err += b.toString();
    });
    p.once("exit", (code) => done({ code, out, err }));
  });
}

/** The entries the flood wrote: its requests, the decisions naming them, oversized-frame denials, its repeats. */
function floodEntries(entries: readonly Entry[]): Entry[] {
  const isNobodyRequest = (e: Entry | undefined) => e?.type === "request" && e.body.peer.uid === NOBODY;
  return entries.filter(
    (e) =>
      isNobodyRequest(e) ||
      (e.type === "decision" && e.refs.some((r) => isNobodyRequest(entries[r.index]))) ||
      (e.type === "decision" && e.body.code === "frame_too_large") ||
      (e.type === "denial_repeats" && e.body.uid === NOBODY),
  );
}

describeTpm(
  "an unknown local user flooding the socket grows the lineage by a bounded number of entries",
  () => {
    let d: TestDaemon;
    beforeAll(async () => {
      // One window for the whole test: its count is written when the daemon stops.
      d = await startTestDaemon({ config: { limits: ["denial_window_ms = 600000"] } });
      // nobody must be able to reach the socket.
      await chmod(dirname(d.dir), 0o755);
      await chmod(d.dir, 0o755);
    });
    afterAll(async () => {
      await d?.dispose();
    });

    it(`${REQUESTS} denied requests and ${OVERSIZED} oversized frames: every one answered, every one accounted for, the export verifies`, async () => {
      const r = await asNobody(d);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      const { reasons, oversized } = JSON.parse(r.out) as {
        reasons: Record<string, number>;
        oversized: number[];
      };
      // The replies are what they always were.
      expect(reasons).toEqual({ peer_unknown: REQUESTS });
      expect(oversized.every((n) => n > 0)).toBe(true);

      expect(await d.stop()).toBe(0);
      const entries = await lineageEntries(d.lineageDir);
      const flood = floodEntries(entries);
      // A request the daemon already recorded while it waited for an epoch gets its decision in
      // full; typically only the window's first does.
      const recorded = flood.filter((e) => e.type === "decision" && e.body.reason === "peer_unknown");
      expect(recorded.length).toBeGreaterThanOrEqual(1);
      const repeats = flood.filter((e) => e.type === "denial_repeats");
      expect(repeats.map((e) => e.body)).toEqual([
        expect.objectContaining({ reason: "peer_unknown", uid: NOBODY, count: REQUESTS - recorded.length }),
        expect.objectContaining({
          reason: "request_malformed",
          code: "frame_too_large",
          uid: NOBODY,
          count: OVERSIZED - 1,
        }),
      ]);
      expect(flood.filter((e) => e.type === "decision" && e.body.code === "frame_too_large")).toHaveLength(1);
      expect(flood.length).toBeLessThanOrEqual(10);
      // The window's repeats name its first recorded denial.
      const first = repeats[0]!.refs[0]!.index;
      expect(entries[first]).toMatchObject({
        type: "decision",
        body: { allow: false, reason: "peer_unknown" },
      });
      // Written at stop, before daemon_stop.
      const stopAt = entries.findLastIndex((e) => e.type === "daemon_stop");
      expect(entries.indexOf(repeats[1]!)).toBeLessThan(stopAt);
      // The operator log names the code and the counts.
      expect(d.stderr()).toMatch(/"code":"frame_too_large"[^\n]*"msg":"denied"/);
      expect(d.stderr()).toMatch(
        new RegExp(`"uid":${NOBODY},"count":${REQUESTS - recorded.length},"msg":"denials_repeated"`),
      );

      await d.start();
      const bundle = join(d.dir, "bundle");
      const ex = await execgate(["audit", "export", "--out", bundle, "--json"], d.env);
      expect(ex.stderr).toBe("");
      expect(ex.code).toBe(0);
      // The EK trust anchors an auditor would hold: swtpm_localca's root and its intermediate.
      const trust = join(d.dir, "ek-ca.pem");
      await writeFile(
        trust,
        `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
      );
      const v = await execgate(["audit", "verify", bundle, "--json", "--trust", trust]);
      expect(JSON.parse(v.stdout).failures).toEqual([]);
      expect(v.code).toBe(0);

      // A crash (kill -9) with a window open loses that window's count, and nothing else: its
      // first denial is in the log, and the log after the restart verifies.
      const before = entries.length;
      const again = await asNobody(d);
      expect(JSON.parse(again.out).reasons).toEqual({ peer_unknown: REQUESTS });
      await d.crash();
      await d.start();
      await d.stop();
      const after = await lineageEntries(d.lineageDir);
      const crashed = floodEntries(after).filter((e) => after.indexOf(e) >= before);
      expect(crashed.filter((e) => e.type === "denial_repeats")).toEqual([]);
      expect(
        crashed.filter((e) => e.type === "decision" && e.body.reason === "peer_unknown").length,
      ).toBeGreaterThan(0);
      expect(crashed.length).toBeLessThanOrEqual(10);
      await d.start();
      const bundle2 = join(d.dir, "bundle-after-crash");
      expect((await execgate(["audit", "export", "--out", bundle2, "--json"], d.env)).code).toBe(0);
      const v2 = await execgate(["audit", "verify", bundle2, "--json", "--trust", trust]);
      expect(JSON.parse(v2.stdout).failures).toEqual([]);
      expect(v2.code).toBe(0);
    }, 240_000);
  },
);
