import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { reloadPolicy } from "../../daemon/start/reload.js";
import { ExecgateError } from "../../src/core/errors.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { PolicyHolder } from "../../src/policy/holder.js";
import { type LoadedPolicy, loadPolicy, policyBlobs } from "../../src/policy/load.js";
import { lineageEntries, openTestLineage } from "../helpers/gate.js";
import { scratchDirs } from "../helpers/scratch.js";

// SIGHUP's policy reload on a real lineage and blob store: a policy that loads is stored,
// recorded as policy_loaded and put in force, and an epoch is asked for; one that fails any
// step is refused, the old one stays, and nothing is recorded.

const scratch = scratchDirs("execgate-reload-");
const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
const GRANT = (uid: number) =>
  `[[executors]]\nname = "t"\nuids = [${uid}]\nscopes = ["dev"]\n[scopes.dev]\nttl_s = 60\n`;

async function setup(check: (p: LoadedPolicy) => LoadedPolicy = (p) => p) {
  const dir = await scratch();
  const path = join(dir, "policy.toml");
  await writeFile(path, GRANT(1000));
  const holder = new PolicyHolder(await loadPolicy(path), 0);
  const lineage = await openTestLineage(join(dir, "lineage"));
  const blobs = await BlobStore.open(join(dir, "blobs"));
  let refreshes = 0;
  const reload = () =>
    reloadPolicy({
      path,
      holder,
      check,
      storePolicy: async (p) => {
        for (const b of policyBlobs(p)) await blobs.put(b);
      },
      lineage,
      refresh: () => {
        refreshes++;
      },
      log: pino({ level: "silent" }),
    });
  return { path, holder, lineage, blobs, reload, refreshes: () => refreshes };
}

describe("policy reload (SIGHUP)", () => {
  it("a policy that loads: its blobs stored, policy_loaded recorded, in force, an epoch asked for", async () => {
    const t = await setup();
    const old = t.holder.current.digest;
    await writeFile(t.path, GRANT(2000));
    await t.reload();
    const next = t.holder.current;
    expect(next.digest).not.toEqual(old);
    expect(next.policy.access.executors[0]?.uids).toEqual([2000]);
    const loaded = (await lineageEntries(t.lineage)).flatMap((e) =>
      e.type === "policy_loaded" ? [e.body] : [],
    );
    expect(loaded).toEqual([{ policyDigest: next.digest, source: t.path }]);
    for (const b of policyBlobs(next)) expect(await t.blobs.has(sha256(b))).toBe(true);
    expect(t.refreshes()).toBe(1);
    expect(t.holder.status(0).last_reload).toMatchObject({ ok: true });
    await t.lineage.close();
  });

  it("a policy that does not parse: refused, the old one in force, nothing recorded, no epoch", async () => {
    const t = await setup();
    const old = t.holder.current;
    await writeFile(t.path, "[[executors]]\nname = 1\n");
    await t.reload();
    expect(t.holder.current).toBe(old);
    expect((await lineageEntries(t.lineage)).filter((e) => e.type === "policy_loaded")).toEqual([]);
    expect(t.refreshes()).toBe(0);
    expect(t.holder.status(0).last_reload).toMatchObject({ ok: false });
    await t.lineage.close();
  });

  it("a policy the quotes could not answer (the check refuses it): refused, the old one in force", async () => {
    const t = await setup(() => {
      throw new ExecgateError("config_invalid", "a rule on PCR 23, which the quotes never sign");
    });
    const old = t.holder.current;
    await writeFile(t.path, GRANT(3000));
    await t.reload();
    expect(t.holder.current).toBe(old);
    expect(t.holder.status(0).last_reload).toMatchObject({
      ok: false,
      error: expect.stringMatching(/PCR 23/),
    });
    expect(t.refreshes()).toBe(0);
    await t.lineage.close();
  });

  it("a lineage that cannot record policy_loaded: refused, the old one in force", async () => {
    const t = await setup();
    const old = t.holder.current;
    await t.lineage.close();
    await writeFile(t.path, GRANT(4000));
    await t.reload();
    expect(t.holder.current).toBe(old);
    expect(t.holder.status(0).last_reload).toMatchObject({ ok: false });
    expect(t.refreshes()).toBe(0);
  });
});
