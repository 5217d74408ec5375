import { join } from "node:path";
import { decodeEntry, type Entry } from "../../src/lineage/entry.js";
import { type Lineage, openLineage } from "../../src/lineage/lineage.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import type { PeerIdentity } from "../../src/peer/index.js";
import { type LoadedPolicy, parsePolicy } from "../../src/policy/load.js";
import { actionDigest } from "../../src/wire/request.js";

/** The caller of the gate tests: uid 1000, which policyGranting's executor matches. */
export const TEST_PEER: PeerIdentity = {
  pid: 4242,
  uid: 1000,
  gid: 1000,
  startTime: 1,
  exe: "/usr/bin/python3",
  exePathVerified: true,
  exeSha256: "a".repeat(64),
  pidfdChecked: true,
};

/** A token request for scope "dev". */
export const DEV_REQUEST = { scope: "dev", action: actionDigest(["/bin/true"]) };

/**
 * A policy in force (only what the gate reads of it): uid 1000 granted `scopes`, each a 60 s
 * scope, under a digest made of `digestByte` (the digest epochs name when judged under it).
 */
export function policyGranting(dir: string, scopes: readonly string[], digestByte = 0): LoadedPolicy {
  const defs = scopes.map((s) => `[scopes.${s}]\nttl_s = 60\n`).join("");
  const policy = parsePolicy(
    `[[executors]]\nname = "t"\nuids = [1000]\nscopes = ${JSON.stringify(scopes)}\n${defs}`,
    dir,
  );
  return {
    policy,
    digest: new Uint8Array(32).fill(digestByte),
    path: join(dir, "policy.toml"),
  } as unknown as LoadedPolicy;
}

/** A lineage in `dir` whose checkpoints a software key signs. */
export function openTestLineage(dir: string): Promise<Lineage> {
  return openLineage({
    dir,
    origin: "execgate.test/gate",
    signer: softwareEd25519Signer("execgate.test/gate"),
    now: Date.now,
  });
}

/** Every entry in the lineage, decoded. */
export async function lineageEntries(lineage: Lineage): Promise<Entry[]> {
  return (await lineage.read(0, lineage.size)).map(decodeEntry);
}
