import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import { execgate } from "../helpers/cli.js";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

interface Row {
  index: number;
  type: string;
  unverified?: boolean;
  caller?: {
    uid?: number;
    gid?: number;
    pid?: number;
    exeDigest?: string;
    unit?: string;
    from: { type: string };
  };
  denial?: { reason: string; code?: string; count?: number };
  allow?: boolean;
  scope?: string;
  tokenId?: string;
  epochId?: string;
  refs: { index: number; type?: string; status: string }[];
}

const ndjson = (s: string): Row[] =>
  s
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Row);

describeTpm("audit show / audit query on a real daemon's bundle", () => {
  let d: TestDaemon;
  let bundle: string;
  let trust: string;
  const tokenIds: string[] = [];
  beforeAll(async () => {
    d = await startTestDaemon();
    const c = await d.client();
    try {
      for (let i = 0; i < 2; i++) {
        const t = await c.requestToken({ scope: "dev", argv: ["/bin/echo", String(i)] });
        const r = await c.redeem(t.token);
        tokenIds.push(toHex(r.tokenId));
        await c.report({ tokenId: r.tokenId, exitStatus: i === 0 ? 0 : 3, durationMs: 5 });
        // the second token is redeemed again: a token_replayed denial naming its allow
        if (i === 1) await c.redeem(t.token).catch(() => undefined);
      }
      await c.requestToken({ scope: "nope", argv: ["/bin/true"] }).catch(() => undefined);
    } finally {
      await c.close();
    }
    trust = join(d.dir, "ek-ca.pem");
    await writeFile(
      trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    bundle = join(d.dir, "bundle");
    const ex = await execgate(["audit", "export", "--out", bundle, "--json"], d.env);
    expect(ex.code).toBe(0);
  });
  afterAll(async () => {
    await d?.dispose();
  });

  it("query --denials: every denial with who and why, verified first", async () => {
    const r = await execgate([
      "audit",
      "query",
      bundle,
      "--denials",
      "--since",
      "-1h",
      "--json",
      "--trust",
      trust,
    ]);
    expect(r.stderr).toMatch(/^verified: \d+ entries/);
    expect(r.code).toBe(0);
    const rows = ndjson(r.stdout);
    const scope = rows.find((x) => x.denial?.reason === "scope_not_allowed");
    expect(scope).toMatchObject({ type: "decision", allow: false, scope: "nope" });
    expect(scope?.caller).toMatchObject({ uid: process.getuid?.(), from: { type: "request" } });
    expect(scope?.caller?.pid).toBeGreaterThan(0);
    expect(scope?.caller?.exeDigest).toMatch(/^[0-9a-f]{64}$/);
    const replay = rows.find((x) => x.denial?.reason === "token_replayed");
    // the replay names the allow it tried to spend again: the token it belongs to
    expect(replay?.tokenId).toBe(tokenIds[1]);
    expect(rows.every((x) => x.unverified === undefined)).toBe(true);
    // the table on a terminal-less stdout: a header and a row per match
    const t = await execgate(["audit", "query", bundle, "--reason", "scope_not_allowed", "--trust", trust]);
    expect(t.code).toBe(0);
    const lines = t.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/INDEX\s+TIME\s+TYPE\s+WHO\s+WHAT/);
    expect(lines.slice(1).join("\n")).toMatch(
      /decision .*uid \d+ gid \d+ pid \d+ exe sha256:.*DENY scope_not_allowed scope=nope/,
    );
  });

  it("query by executable, uid, scope, type and token", async () => {
    const all = ndjson((await execgate(["audit", "query", bundle, "--json", "--trust", trust])).stdout);
    const request = all.find((x) => x.type === "request" && x.scope === "dev")!;
    const exe = request.caller!.exeDigest!;
    const byExe = ndjson(
      (
        await execgate([
          "audit",
          "query",
          bundle,
          "--exe",
          exe,
          "--since",
          "today",
          "--json",
          "--trust",
          trust,
        ])
      ).stdout,
    );
    expect(byExe.length).toBeGreaterThan(0);
    expect(byExe.every((x) => x.caller?.exeDigest === exe)).toBe(true);
    // requests, allows, issued, redeemed and reports of both tokens: the executable's whole day
    for (const type of ["request", "decision", "token_issued", "token_redeemed", "execution_report"])
      expect(
        byExe.map((x) => x.type),
        type,
      ).toContain(type);
    // by path: the SHA-256 of the file there (the client ran under this very node binary)
    const byPath = ndjson(
      (await execgate(["audit", "query", bundle, "--exe", process.execPath, "--json", "--trust", trust]))
        .stdout,
    );
    expect(byPath.map((x) => x.index)).toEqual(
      ndjson(
        (await execgate(["audit", "query", bundle, "--exe", exe, "--json", "--trust", trust])).stdout,
      ).map((x) => x.index),
    );
    const tok = ndjson(
      (await execgate(["audit", "query", bundle, "--token", tokenIds[0]!, "--json", "--trust", trust]))
        .stdout,
    );
    expect(tok.map((x) => x.type)).toEqual([
      "decision",
      "token_issued",
      "token_redeemed",
      "execution_report",
    ]);
    const reports = ndjson(
      (
        await execgate([
          "audit",
          "query",
          bundle,
          "--type",
          "execution_report",
          "--scope",
          "dev",
          "--json",
          "--trust",
          trust,
        ])
      ).stdout,
    );
    expect(reports.map((x) => x.tokenId)).toEqual(tokenIds);
    const none = await execgate(["audit", "query", bundle, "--uid", "4242", "--json", "--trust", trust]);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("");
    expect((await execgate(["audit", "query", bundle, "--type", "nonsense"])).code).toBe(2);
    expect((await execgate(["audit", "query", bundle, "--since", "yesterday-ish"])).code).toBe(2);
  });

  it("show --index: the entry decoded, references resolved, inclusion proof verified", async () => {
    const denials = ndjson(
      (await execgate(["audit", "query", bundle, "--reason", "scope_not_allowed", "--json", "--log-only"]))
        .stdout,
    );
    const idx = denials[0]!.index;
    const r = await execgate(["audit", "show", bundle, "--index", String(idx), "--json", "--trust", trust]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.verified).toBe(true);
    const e = out.entries[0];
    expect(e).toMatchObject({ index: idx, type: "decision", denial: { reason: "scope_not_allowed" } });
    expect(e.refs[0]).toMatchObject({ index: idx - 1, type: "request", status: "ok" });
    expect(e.refs.some((x: { type: string }) => x.type === "epoch")).toBe(true);
    expect(e.inclusion).toMatchObject({ index: idx, verified: true });
    expect(e.inclusion.path.length).toBeGreaterThan(0);
    // the proof is to the bundle's checkpoint file, whose signed note is printed with it
    expect(out.checkpoint.size).toBe(e.inclusion.treeSize);
    expect(out.checkpoint.root).toBe(e.inclusion.root);
    expect(out.checkpoint.note).toBe(await readFile(join(bundle, "checkpoint"), "utf8"));
    const text = await execgate(["audit", "show", bundle, "--index", String(idx), "--log-only"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/what: DENY scope_not_allowed scope=nope/);
    expect(text.stdout).toMatch(/who: uid \d+ gid \d+ pid \d+ exe sha256:\S+ \(from request \d+\)/);
    expect(text.stdout).toMatch(
      /inclusion: VERIFIED — entry \d+ in the tree of \d+ signed by the latest checkpoint/,
    );
  });

  it("show --token: the whole chain of one execution and its epoch, each link proven", async () => {
    const r = await execgate(["audit", "show", bundle, "--token", tokenIds[1]!, "--json", "--trust", trust]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ tokenId: tokenIds[1], found: true, complete: true, missing: [] });
    const roles = out.entries.map((e: { role: string }) => e.role);
    expect(roles).toEqual([
      "request",
      "decision",
      "epoch",
      "token issued",
      "token redeemed",
      "execution report",
      "denial naming it",
    ]);
    for (const e of out.entries) expect(e.inclusion.verified, e.role).toBe(true);
    const byRole = (role: string) => out.entries.find((e: { role: string }) => e.role === role);
    expect(byRole("decision")).toMatchObject({ allow: true, scope: "dev", tokenId: tokenIds[1] });
    expect(byRole("execution report").body).toMatchObject({ exitCode: 3, durationMs: 5 });
    expect(byRole("denial naming it").denial.reason).toBe("token_replayed");
    const epoch = byRole("epoch");
    expect(epoch.epoch.verified).toBe(true);
    expect(epoch.epoch.pcrs.length).toBeGreaterThan(0);
    expect(epoch.epoch.policyDigest).toMatch(/^[0-9a-f]{64}$/);
    // the decision was made on that epoch, and the token's claims name it too
    expect(byRole("decision").epochId).toBe(epoch.epochId);
    expect(byRole("token redeemed").epochId).toBe(epoch.epochId);
    // --epoch finds it by a prefix of its id
    const ep = await execgate(["audit", "show", bundle, "--epoch", epoch.epochId.slice(0, 12), "--log-only"]);
    expect(ep.code).toBe(0);
    expect(ep.stdout).toMatch(/decided on this epoch: \d+ allow\(s\), \d+ denial\(s\)/);
    expect(ep.stdout).toMatch(/PCR sha256:0 = [0-9a-f]{64}/);
    const missing = await execgate([
      "audit",
      "show",
      bundle,
      "--token",
      "00000000000003e70000000000000000",
      "--log-only",
    ]);
    expect(missing.code).toBe(1);
  });

  it("a tampered bundle is refused, first failure first; --unverified answers and says so on every line", async () => {
    const bad = join(d.dir, "tampered");
    await cp(bundle, bad, { recursive: true });
    const [seg] = await readdir(join(bad, "segments"));
    const p = join(bad, "segments", seg!);
    const bytes = await readFile(p);
    bytes[bytes.length - 5]! ^= 0x01;
    await writeFile(p, bytes);
    const q = await execgate(["audit", "query", bad, "--denials", "--trust", trust]);
    expect(q.code).toBe(1);
    expect(q.stdout.split("\n")[0]).toMatch(/^FAILED: the bundle does not verify/);
    expect(q.stdout.split("\n")[1]).toMatch(/^first failure: record .*bad record at offset/);
    const s = await execgate(["audit", "show", bad, "--index", "0", "--json", "--log-only"]);
    expect(s.code).toBe(1);
    expect(JSON.parse(s.stdout).verified).toBe(false);
    const u = await execgate(["audit", "query", bad, "--unverified"]);
    expect(u.code).toBe(0);
    const lines = u.stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.every((l) => l.startsWith("UNVERIFIED "))).toBe(true);
    const uj = ndjson((await execgate(["audit", "query", bad, "--unverified", "--json"])).stdout);
    expect(uj.length).toBeGreaterThan(0);
    expect(uj.every((x) => x.unverified === true)).toBe(true);
    expect((await execgate(["audit", "query", bad, "--unverified", "--trust", trust])).code).toBe(2);
    // show too: every line says it, and no proof verifies (the tree stops at the bad record,
    // short of the size the checkpoint signed)
    const st = await execgate(["audit", "show", bad, "--token", tokenIds[0]!, "--unverified"]);
    expect(st.code).toBe(1);
    expect(st.stdout).toMatch(
      /inclusion: NOT verified \(the bundle's entries end at \d+, short of the \d+ the checkpoint signs\)/,
    );
    expect(st.stdout).not.toMatch(/inclusion: VERIFIED/);
    const sl = st.stdout.trim().split("\n");
    expect(sl.length).toBeGreaterThan(10);
    expect(sl.filter((l) => !l.startsWith("UNVERIFIED"))).toEqual([]);
  });
});

describe("explorer commands' help", () => {
  it("show and query state their exit codes", async () => {
    for (const c of ["show", "query"]) {
      const r = await execgate(["audit", c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Exit: 0 /m);
    }
  });
});
