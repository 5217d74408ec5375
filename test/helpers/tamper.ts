import { cp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { ExecgateClient } from "../../src/client/index.js";
import { execgate } from "./cli.js";
import { startTestDaemon, type TestDaemon } from "./daemon.js";

/**
 * Real exported bundles for tamper tests (docs/audit.md, "Bundle files"): one daemon run on a
 * swtpm, exported twice (`old`, then the honest `bundle`); a `fork` of the same log under the
 * same TPM key (the daemon restarted on a copy of its state taken after the old export, with
 * other requests); and a bundle from `other`, another host. A case changes a copy of `bundle`
 * and states the check its verdict must name first.
 */
export interface TamperWorld {
  readonly dir: string;
  readonly bundle: string;
  readonly old: string;
  readonly fork: string;
  readonly other: string;
  /** The EK trust anchors (swtpm_localca root and issuer). */
  readonly trust: string;
  /** The log key the auditor pinned: the honest bundle's log.vkey, kept aside. */
  readonly vkey: string;
}

export interface TamperCase {
  /** "<file kind>: <change>". */
  readonly name: string;
  readonly change: (copy: string, w: TamperWorld) => Promise<void>;
  /** The check the report names first (the root cause). */
  /** The first failure's check; a list where timing decides which of them comes first. */
  readonly check: string | readonly string[];
  /** Other arguments than `--trust TRUST --vkey VKEY` (e.g. no pinned key, a kept checkpoint). */
  readonly args?: (w: TamperWorld) => string[];
  /** Verify this bundle instead of a copy of the honest one (e.g. the old export). */
  readonly target?: (w: TamperWorld) => string;
}

async function traffic(d: TestDaemon, n: number, tag: string): Promise<void> {
  const c: ExecgateClient = await d.client();
  try {
    for (let i = 0; i < n; i++) {
      const t = await c.requestToken({ scope: "dev", argv: ["/bin/echo", tag, String(i)] });
      const r = await c.redeem(t.token);
      await c.report({ tokenId: r.tokenId, exitStatus: 0, durationMs: 1 });
    }
  } finally {
    await c.close();
  }
}

async function exportTo(d: TestDaemon, out: string): Promise<void> {
  const r = await execgate(["audit", "export", "--out", out, "--json"], d.env);
  if (r.code !== 0) throw new Error(`export failed (${r.code}): ${r.stderr}`);
}

export async function buildTamperWorld(): Promise<{ world: TamperWorld; dispose: () => Promise<void> }> {
  const daemons: TestDaemon[] = [];
  const dispose = async () => {
    for (const d of daemons) await d.dispose();
  };
  try {
    const d = await startTestDaemon();
    daemons.push(d);
    const dir = d.dir;
    const w = {
      dir,
      bundle: join(dir, "bundle"),
      old: join(dir, "old"),
      fork: join(dir, "fork"),
      other: join(dir, "other"),
      trust: join(dir, "ek-ca.pem"),
      vkey: join(dir, "pinned.vkey"),
    };
    await writeFile(
      w.trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    await traffic(d, 20, "a");
    await exportTo(d, w.old);
    // A copy of the live state is what a crash leaves: the forked daemon recovers it at start.
    const state = join(dir, "state");
    const forkState = join(dir, "fork-state");
    await cp(state, forkState, { recursive: true });
    await rm(join(forkState, "exports"), { recursive: true, force: true });
    // Past 256 entries: full tiles at level 0 and a tile at level 1.
    await traffic(d, 70, "b");
    await exportTo(d, w.bundle);
    await cp(join(w.bundle, "log.vkey"), w.vkey);
    await d.stop();
    // The fork: the same TPM and keys, the state from before "b", fewer other requests (so its
    // checkpoints have sizes the honest log also reaches).
    const config = await readFile(d.config, "utf8");
    await writeFile(
      d.config,
      config.replaceAll(JSON.stringify(state).slice(0, -1), JSON.stringify(forkState).slice(0, -1)),
    );
    await d.start();
    await traffic(d, 10, "c");
    await exportTo(d, w.fork);
    await d.stop();
    // Its own policy file, so its blobs differ from the honest ones (same swtpm PCRs otherwise).
    const o = await startTestDaemon({ policyExtra: "# another host" });
    daemons.push(o);
    await traffic(o, 5, "o");
    await exportTo(o, w.other);
    await o.stop();
    return { world: w, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

interface Verdict {
  ok: boolean;
  failures: { check: string; reason: string }[];
}

/** One `it` per case: exit 1, and the report's first failure is the case's check. */
export function tamperCases(world: () => TamperWorld, cases: readonly TamperCase[]): void {
  let n = 0;
  for (const c of cases) {
    const k = n++;
    const expected = typeof c.check === "string" ? [c.check] : c.check;
    it(`${c.name} → ${expected.join(" | ")}`, async () => {
      const w = world();
      let target = c.target?.(w);
      if (target === undefined) {
        target = join(w.dir, `case-${k}`);
        await cp(w.bundle, target, { recursive: true });
        await c.change(target, w);
      }
      const args = c.args?.(w) ?? ["--trust", w.trust, "--vkey", w.vkey];
      const r = await execgate(["audit", "verify", target, "--json", ...args]);
      const v = JSON.parse(r.stdout) as Verdict;
      expect(expected, JSON.stringify(v.failures.slice(0, 5))).toContain(v.failures[0]?.check);
      expect(v.ok).toBe(false);
      expect(r.code).toBe(1);
      if (target.endsWith(`case-${k}`)) await rm(target, { recursive: true, force: true });
    });
  }
}
