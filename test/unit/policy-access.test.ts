import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { type AccessPeer, evaluateAccess, executorMatches } from "../../src/policy/access.js";
import { loadIntegrityPolicy } from "../../src/policy/integrity-load.js";
import { loadPolicy, parsePolicy } from "../../src/policy/load.js";
import { decodePolicyRecord } from "../../src/policy/record.js";

const EXAMPLE = join(import.meta.dirname, "../../examples/policy.toml");
const H = (c: string) => c.repeat(64);
const bytes = (c: string) => new Uint8Array(Buffer.from(H(c), "hex"));

const POLICY = `
[[executors]]
name = "trainer"
uids = [1000]
gids = []
exe_sha256 = ["${H("A")}"]
exe_paths = ["/usr/bin/python3.12"]
units = ["trainer.service"]
scopes = ["train", "dev"]

[[executors]]
name = "ops"
gids = [50]
scopes = ["dev", "admin"]

[[executors]]
name = "both"
uids = [7]
gids = [70]
scopes = ["dev"]

[scopes.train]
ttl_s = 30
fresh = true
actions = ["${H("b")}"]

[scopes.dev]
ttl_s = 300

[scopes.admin]
ttl_s = 5
audiences = ["ops-gw", "execgate"]

[scopes.unused]
ttl_s = 1
`;

const policy = parsePolicy(POLICY, "/etc/execgate").access;

const trainer: AccessPeer = {
  uid: 1000,
  gid: 1000,
  exe: "/usr/bin/python3.12",
  exePathVerified: true,
  exeSha256: H("a"),
  unit: "trainer.service",
};

describe("policy: access schema", () => {
  it("parses executors and scopes", () => {
    expect(policy.executors.map((e) => e.name)).toEqual(["trainer", "ops", "both"]);
    expect(policy.executors[0]).toEqual({
      name: "trainer",
      uids: [1000],
      gids: [],
      exeSha256: [H("a")],
      exePaths: ["/usr/bin/python3.12"],
      units: ["trainer.service"],
      scopes: ["train", "dev"],
    });
    expect(policy.executors[1]).toEqual({ name: "ops", uids: [], gids: [50], scopes: ["dev", "admin"] });
    expect(policy.scopes.get("train")).toEqual({ name: "train", ttlS: 30, fresh: true, actions: [H("b")] });
    expect(policy.scopes.get("dev")).toEqual({ name: "dev", ttlS: 300, fresh: false });
    expect(policy.scopes.get("admin")?.audiences).toEqual(["ops-gw", "execgate"]);
  });

  it("a policy with only [integrity], or empty, grants nothing", () => {
    const p = parsePolicy(`[integrity.eventlog]\nsecure_boot = true`, "/x");
    expect(p.access.executors).toEqual([]);
    expect(p.integrity.eventlog?.secureBoot).toBe(true);
    expect(
      evaluateAccess(parsePolicy("", "/x").access, trainer, { scope: "dev", action: bytes("b") }),
    ).toMatchObject({ ok: false, reason: "peer_unknown" });
  });

  it("the example policy parses and loads; its digest is that of a record naming the file", async () => {
    const { readFile } = await import("node:fs/promises");
    const { createHash } = await import("node:crypto");
    const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
    const loaded = await loadPolicy(EXAMPLE);
    expect(loaded.policy.access.executors.map((e) => e.name)).toEqual(["trainer", "inference"]);
    expect(loaded.integrity.eventlog?.secureBoot).toBe(true);
    expect(loaded.digest).toEqual(sha256(loaded.record));
    // The example has no [integrity.ima]: the record names the policy file only.
    expect(decodePolicyRecord(loaded.record)).toEqual({ policy: sha256(await readFile(EXAMPLE)) });
    // `execgate policy check` reads the same file through the integrity loader alone
    const integrityOnly = await loadIntegrityPolicy(EXAMPLE);
    expect(integrityOnly).toEqual(loaded.integrity);
  });

  const ex = (body: string) => `[scopes.s]\nttl_s = 1\n[[executors]]\nname = "e"\nscopes = ["s"]\n${body}`;
  const cases: [string, string, string, RegExp][] = [
    ["unknown top-level key", "[executor]\nname = 'x'", "executor", /unknown key/],
    ["executors as a table", "[executors.a]\nuids = [1]", "executors", /array of tables/],
    ["unknown executor key", ex("uids = [1]\nuid = 1"), "executors[0].uid", /unknown key/],
    ["no uid and no gid", ex("gids = []"), "executors[0]", /no uid and no gid/],
    [
      "missing name",
      "[scopes.s]\nttl_s = 1\n[[executors]]\nuids = [1]\nscopes = ['s']",
      "executors[0].name",
      /required/,
    ],
    [
      "bad name",
      ex("uids = [1]").replace('name = "e"', 'name = "-e"'),
      "executors[0].name",
      /must be a name/,
    ],
    ["negative uid", ex("uids = [-1]"), "executors[0].uids[0]", /integer id/],
    ["uid (uid_t)-1", ex("uids = [4294967295]"), "executors[0].uids[0]", /integer id/],
    ["string uid", ex('uids = ["1000"]'), "executors[0].uids[0]", /integer id/],
    ["duplicate uid", ex("uids = [1, 1]"), "executors[0].uids[1]", /duplicate/],
    ["short digest", ex('uids = [1]\nexe_sha256 = ["abcd"]'), "executors[0].exe_sha256[0]", /64 hex/],
    ["empty exe list", ex("uids = [1]\nexe_sha256 = []"), "executors[0].exe_sha256", /would match nothing/],
    ["relative exe path", ex('uids = [1]\nexe_paths = ["bin/x"]'), "executors[0].exe_paths[0]", /absolute/],
    [
      "unnormalized exe path",
      ex('uids = [1]\nexe_paths = ["/usr/bin/../bin/x"]'),
      "executors[0].exe_paths[0]",
      /normalized/,
    ],
    [
      "unit without suffix",
      ex('uids = [1]\nunits = ["trainer"]'),
      "executors[0].units[0]",
      /\.service or \.scope/,
    ],
    ["scopes missing", "[[executors]]\nname = 'e'\nuids = [1]", "executors[0].scopes", /required/],
    [
      "undefined scope",
      ex("uids = [1]").replace('scopes = ["s"]', 'scopes = ["s", "t"]'),
      "executors[0].scopes[1]",
      /not defined/,
    ],
    [
      "no scopes",
      ex("uids = [1]").replace('scopes = ["s"]', "scopes = []"),
      "executors[0].scopes",
      /would match nothing/,
    ],
    [
      "duplicate executor",
      `${ex("uids = [1]")}\n[[executors]]\nname = "e"\nuids = [2]\nscopes = ["s"]`,
      "executors[1].name",
      /defined twice/,
    ],
    ["ttl missing", "[scopes.s]\nfresh = true", "scopes.s.ttl_s", /required/],
    ["ttl zero", "[scopes.s]\nttl_s = 0", "scopes.s.ttl_s", /1\.\.3600/],
    ["ttl too long", "[scopes.s]\nttl_s = 3601", "scopes.s.ttl_s", /1\.\.3600/],
    ["fresh not bool", '[scopes.s]\nttl_s = 1\nfresh = "yes"', "scopes.s.fresh", /true or false/],
    ["unknown scope key", "[scopes.s]\nttl_s = 1\nttl = 2", "scopes.s.ttl", /unknown key/],
    ["bad scope name", '[scopes."a b"]\nttl_s = 1', "scopes.a b", /must be a name/],
    ["empty audiences", "[scopes.s]\nttl_s = 1\naudiences = []", "scopes.s.audiences", /would match nothing/],
    [
      "audience with space",
      '[scopes.s]\nttl_s = 1\naudiences = ["a b"]',
      "scopes.s.audiences[0]",
      /printable/,
    ],
    ["bad action", '[scopes.s]\nttl_s = 1\nactions = ["zz"]', "scopes.s.actions[0]", /64 hex/],
    [
      "duplicate action (case)",
      `[scopes.s]\nttl_s = 1\nactions = ["${H("a")}", "${H("A")}"]`,
      "scopes.s.actions[1]",
      /duplicate/,
    ],
    ["integrity error names the file", "[integrity]\npcr = 1", "integrity.pcr", /unknown key/],
  ];
  it.each(cases)("%s", (_n, text, key, why) => {
    let err: unknown;
    try {
      parsePolicy(text, "/etc/execgate", "/etc/execgate/policy.toml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExecgateError);
    const e = err as ExecgateError;
    expect(e.code).toBe("config_invalid");
    expect(e.detail.key).toBe(key);
    expect(e.detail.file).toBe("/etc/execgate/policy.toml");
    expect(e.message.startsWith("/etc/execgate/policy.toml: ")).toBe(true);
    expect(e.message).toMatch(why);
  });

  it("invalid TOML is config_invalid; a missing file is io_error", async () => {
    expect(() => parsePolicy("[[executors]", "/x")).toThrow(
      expect.objectContaining({ code: "config_invalid" }),
    );
    const dir = await mkdtemp(join(tmpdir(), "execgate-policy-"));
    await expect(loadPolicy(join(dir, "none.toml"))).rejects.toMatchObject({ code: "io_error" });
    const f = join(dir, "p.toml");
    await writeFile(f, "[integrity.ima]\nallowlist = 'missing.txt'\n");
    await expect(loadPolicy(f)).rejects.toMatchObject({ code: "io_error" }); // allowlist resolved next to the file
    await writeFile(join(dir, "missing.txt"), `${H("c")}  /usr/bin/x\n`);
    const loaded = await loadPolicy(f);
    expect(loaded.integrity.ima?.allowlist).toBeDefined();
  });
});

describe("policy: evaluateAccess", () => {
  const act = bytes("b");
  type Case = [
    string,
    AccessPeer,
    { scope: string; action?: Uint8Array; audience?: string },
    string,
    string?,
  ];
  const cases: Case[] = [
    ["trainer, all attributes match", trainer, { scope: "train" }, "ok:trainer"],
    [
      "exe digest in upper case from the peer still matches",
      { ...trainer, exeSha256: H("A") },
      { scope: "dev" },
      "ok:trainer",
    ],
    ["wrong uid", { ...trainer, uid: 1001 }, { scope: "train" }, "peer_unknown"],
    ["wrong exe digest", { ...trainer, exeSha256: H("c") }, { scope: "train" }, "peer_unknown"],
    ["wrong exe path", { ...trainer, exe: "/usr/bin/python3" }, { scope: "train" }, "peer_unknown"],
    ["deleted exe", { ...trainer, exe: "/usr/bin/python3.12 (deleted)" }, { scope: "train" }, "peer_unknown"],
    [
      "the listed exe path, unverified (another mount namespace)",
      { ...trainer, exePathVerified: false },
      { scope: "train" },
      "peer_unknown",
    ],
    [
      "no unit",
      { uid: 1000, gid: 1000, exe: "/usr/bin/python3.12", exePathVerified: true, exeSha256: H("a") },
      { scope: "train" },
      "peer_unknown",
    ],
    ["other unit", { ...trainer, unit: "evil.service" }, { scope: "train" }, "peer_unknown"],
    ["gid-only executor", { ...trainer, uid: 5, gid: 50 }, { scope: "admin" }, "ok:ops"],
    [
      "uid and gid both named: both must match",
      { ...trainer, uid: 7, gid: 1 },
      { scope: "dev" },
      "peer_unknown",
    ],
    ["uid and gid both match", { ...trainer, uid: 7, gid: 70 }, { scope: "dev" }, "ok:both"],
    ["scope not granted", trainer, { scope: "admin" }, "scope_not_allowed"],
    ["scope does not exist", trainer, { scope: "nope" }, "scope_not_allowed"],
    ["scope exists but unused", trainer, { scope: "unused" }, "scope_not_allowed"],
    ["prototype name as scope", trainer, { scope: "constructor" }, "scope_not_allowed"],
    ["two executors match: the one granting wins", { ...trainer, gid: 50 }, { scope: "admin" }, "ok:ops"],
    [
      "two executors match: first granting in file order",
      { ...trainer, gid: 50 },
      { scope: "dev" },
      "ok:trainer",
    ],
    ["action not in allowlist", trainer, { scope: "train", action: bytes("c") }, "policy_mismatch"],
    [
      "action of the wrong length",
      trainer,
      { scope: "train", action: act.subarray(0, 31) },
      "policy_mismatch",
    ],
    ["no allowlist: any action", trainer, { scope: "dev", action: bytes("9") }, "ok:trainer"],
    ["default audience allowed", trainer, { scope: "dev", audience: "execgate" }, "ok:trainer"],
    ["other audience, scope without audiences", trainer, { scope: "dev", audience: "x" }, "policy_mismatch"],
    ["listed audience", { ...trainer, gid: 50 }, { scope: "admin", audience: "ops-gw" }, "ok:ops", "ops-gw"],
    ["unlisted audience", { ...trainer, gid: 50 }, { scope: "admin", audience: "x" }, "policy_mismatch"],
  ];
  it.each(cases)("%s", (_n, peer, req, want, audience) => {
    const r = evaluateAccess(policy, peer, { action: act, ...req });
    if (want.startsWith("ok:")) {
      expect(r).toMatchObject({ ok: true, executor: want.slice(3) });
      if (r.ok) expect(r.scope.audience).toBe(audience ?? "execgate");
    } else {
      expect(r).toMatchObject({ ok: false, reason: want });
      if (!r.ok) expect(r.detail.length).toBeGreaterThan(0);
    }
  });

  it("exe_paths matches only a path verified in the daemon's mount namespace; other attributes still match", () => {
    const unverified: AccessPeer = { ...trainer, exePathVerified: false };
    const base = { name: "x", uids: [1000], gids: [], scopes: ["dev"] };
    expect(executorMatches({ ...base, exePaths: [trainer.exe] }, trainer)).toBe(true);
    expect(executorMatches({ ...base, exePaths: [trainer.exe] }, unverified)).toBe(false);
    expect(executorMatches({ ...base, exeSha256: [H("a")] }, unverified)).toBe(true);
    expect(executorMatches({ ...base, units: ["trainer.service"] }, unverified)).toBe(true);
    expect(executorMatches(base, unverified)).toBe(true);
    // the denial's detail says what was seen, and that the path vouched for nothing
    const r = evaluateAccess(policy, { ...unverified, gid: 1 }, { scope: "train", action: act });
    expect(r).toMatchObject({ ok: false, reason: "peer_unknown" });
    if (!r.ok) expect(r.detail).toContain("exe /usr/bin/python3.12 (path unverified) sha256");
    const v = evaluateAccess(policy, { ...trainer, gid: 1, uid: 1 }, { scope: "train", action: act });
    if (!v.ok) expect(v.detail).toContain("exe /usr/bin/python3.12 sha256");
  });

  it("the grant carries the scope's settings", () => {
    expect(evaluateAccess(policy, trainer, { scope: "train", action: act })).toEqual({
      ok: true,
      executor: "trainer",
      scope: { name: "train", ttlS: 30, fresh: true, audience: "execgate" },
    });
  });

  it("the daemon's audience is the default for requests and scopes", () => {
    const r = evaluateAccess(policy, trainer, { scope: "dev", action: act }, "gpu-host-7");
    expect(r).toMatchObject({ ok: true, scope: { audience: "gpu-host-7" } });
    expect(
      evaluateAccess(policy, trainer, { scope: "dev", action: act, audience: "execgate" }, "gpu-host-7"),
    ).toMatchObject({
      ok: false,
      reason: "policy_mismatch",
    });
    // a scope listing audiences does not implicitly include the daemon's
    const p = parsePolicy(
      '[scopes.s]\nttl_s = 1\naudiences = ["a"]\n[[executors]]\nname = "e"\nuids = [1000]\nscopes = ["s"]',
      "/x",
    );
    expect(evaluateAccess(p.access, trainer, { scope: "s", action: act })).toMatchObject({
      reason: "policy_mismatch",
    });
  });
});

describe("policy: execgate policy check still reads a file with executors and scopes", () => {
  it("evaluates the example policy's integrity part instead of refusing the file", async () => {
    const { command } = await import("../../daemon/commands/policy-check.js");
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string | Uint8Array) => {
      out.push(String(s));
      return true;
    }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await command.run(["--policy", EXAMPLE, "--json"]);
    } finally {
      process.stdout.write = write;
    }
    // exit 0 with skips: evaluated, its PCR rules not run (no --pcrs given); 2 would mean the
    // file was refused
    expect(code).toBe(0);
    const r = JSON.parse(out.join("")) as { ok: boolean; skipped: number; results: unknown[] };
    expect(r.ok).toBe(true);
    expect(r.skipped).toBeGreaterThan(0);
    expect(r.results.length).toBeGreaterThan(0);
  });
});
