import {
  ExplainCache,
  type ExploredEntry,
  explainEntry,
  parseTokenId,
  TokenChainCollector,
  type TokenLinks,
} from "../../src/audit/explore/index.js";
import { asExecgateError } from "../../src/core/errors.js";
import { bytesEqual, toHex } from "../../src/core/hex.js";
import type { Checkpoint } from "../../src/lineage/checkpoint.js";
import { leafHash } from "../../src/lineage/hash.js";
import type { MerkleTree } from "../../src/lineage/merkle.js";
import { flag, type Parsed, parseCommandArgs, printJson, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import {
  BundleLookup,
  bundleEntries,
  bundleTree,
  entryAt,
  type InclusionView,
  inclusionOf,
  readLatestCheckpoint,
} from "../explore-bundle.js";
import { entryText } from "../explore-format.js";
import { EXPLORE_OPTIONS, EXPLORE_USAGE, verifyFirst } from "../explore-gate.js";

/**
 * `audit show`: one entry (--index), one execution's chain (--token) or one epoch (--epoch),
 * decoded, references resolved, each with its RFC 9162 inclusion proof to the bundle's latest
 * signed checkpoint, recomputed and verified here.
 */

interface Shown {
  readonly role: string;
  readonly entry: ExploredEntry;
  readonly inclusion: InclusionView;
}

interface Ctx {
  readonly dir: string;
  readonly lookup: BundleLookup;
  readonly tree: MerkleTree;
  readonly cp: Checkpoint;
  readonly cache: ExplainCache;
}

async function show(ctx: Ctx, index: number, role: string): Promise<Shown | undefined> {
  // The entry bundle when it holds the very bytes the tree was built from; else the segment.
  const tiled = ctx.lookup.lookup(index);
  const bytes =
    tiled !== undefined && bytesEqual(leafHash(tiled), ctx.tree.leafHash(index))
      ? tiled
      : await entryAt(ctx.dir, index);
  if (bytes === undefined) return undefined;
  return {
    role,
    entry: explainEntry(index, bytes, ctx.lookup.lookup, ctx.cache),
    inclusion: inclusionOf(ctx.tree, index, bytes, ctx.cp),
  };
}

/** The token's links, found by one pass from its allow decision on. */
async function chainOf(ctx: Ctx, tokenId: string): Promise<TokenLinks | undefined> {
  const c = new TokenChainCollector(tokenId);
  for await (const { index, bytes } of bundleEntries(ctx.dir, c.decisionIndex)) {
    ctx.lookup.saw(index, bytes);
    try {
      c.observe(explainEntry(index, bytes, ctx.lookup.lookup, ctx.cache));
    } catch {
      // an undecodable entry belongs to no chain (audit verify reports it)
    }
  }
  return c.result();
}

/** Epoch entries whose id starts with `prefix`, and how many decisions were made on each. */
async function epochsMatching(
  ctx: Ctx,
  prefix: string,
): Promise<{ index: number; allows: number; denials: number }[]> {
  const found = new Map<string, { index: number; allows: number; denials: number }>();
  for await (const { index, bytes } of bundleEntries(ctx.dir)) {
    ctx.lookup.saw(index, bytes);
    let e: ExploredEntry;
    try {
      e = explainEntry(index, bytes, ctx.lookup.lookup, ctx.cache);
    } catch {
      continue;
    }
    if (e.epochId === undefined || !e.epochId.startsWith(prefix)) continue;
    if (e.type === "epoch") found.set(e.epochId, { index, allows: 0, denials: 0 });
    const ep = found.get(e.epochId);
    if (ep && e.type === "decision") {
      if (e.allow) ep.allows += 1;
      else ep.denials += 1;
    }
  }
  return [...found.values()];
}

function print(
  p: Parsed,
  shown: readonly Shown[],
  header: string,
  extra: Record<string, unknown>,
  prefix: string,
  cp: { checkpoint: Checkpoint; note: string },
): void {
  const c = cp.checkpoint;
  if (flag(p, "json")) {
    printJson({
      ...(prefix !== "" ? { unverified: true } : { verified: true }),
      checkpoint: { origin: c.origin, size: c.size, root: toHex(c.rootHash), note: cp.note },
      ...extra,
      entries: shown.map((s) => ({ role: s.role, ...s.entry, inclusion: s.inclusion })),
    });
    return;
  }
  const signed = prefix === "" ? "verified above" : "NOT verified: --unverified";
  const out = [
    // The unverified note already says so; every other line carries the prefix.
    ...header.split("\n").map((l) => (l.startsWith("UNVERIFIED") ? l : `${prefix}${l}`)),
    `${prefix}latest checkpoint: ${c.origin}, size ${c.size}, root ${toHex(c.rootHash)} (${signed})`,
  ];
  for (const s of shown) out.push(`${prefix}${s.role}:`, ...entryText(s.entry, s.inclusion, prefix));
  process.stdout.write(`${out.join("\n")}\n`);
}

function intArg(p: Parsed, name: string): number | undefined {
  const s = str(p, name);
  if (s === undefined) return undefined;
  if (!/^\d{1,15}$/.test(s)) throw usageError(`--${name} must be a non-negative integer`);
  return Number(s);
}

export const command: Command = {
  summary: "show an entry, a token's whole chain or an epoch, decoded, with verified inclusion proofs",
  usage:
    "DIR (--index N | --token CTI | --epoch HEX) [--json] [--unverified | VERIFY FLAGS]\n" +
    "  --index N: entry N decoded, its references resolved, who and why, its inclusion proof\n" +
    "  --token CTI: one execution (token id, 32 hex digits, as `token redeem` and the report print it):\n" +
    "    request → decision → token issued → redeemed → report, the epoch it was decided on, and\n" +
    "    any denial naming it, each with its inclusion proof; the token bytes are not needed\n" +
    "  --epoch HEX: the epoch whose id (SHA-256 of its binding, the tokens' epoch claim) starts with HEX\n" +
    "    (at least 8 hex digits): quote verdict, PCRs, boot, policy digest, decisions made on it\n" +
    "  Proofs are to the bundle's latest signed checkpoint (its `checkpoint` file), recomputed here.\n" +
    EXPLORE_USAGE +
    "Exit: 0 shown and every proof verified, 1 the bundle does not verify, a proof fails or nothing\n" +
    "  matches, 2 usage, 3 unreadable bundle.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      { ...EXPLORE_OPTIONS, index: { type: "string" }, token: { type: "string" }, epoch: { type: "string" } },
      true,
    );
    const dir = p.positionals[0];
    if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
    const asked = (["index", "token", "epoch"] as const).filter((k) => str(p, k) !== undefined);
    if (asked.length !== 1) throw usageError("give exactly one of --index, --token, --epoch");
    const index = intArg(p, "index");
    let tokenId: string | undefined;
    try {
      if (str(p, "token") !== undefined) tokenId = parseTokenId(str(p, "token")!).tokenId;
    } catch (e) {
      throw usageError(`--token: ${asExecgateError(e).message}`);
    }
    const epoch = str(p, "epoch")?.toLowerCase();
    if (epoch !== undefined && !/^[0-9a-f]{8,64}$/.test(epoch))
      throw usageError("--epoch: 8 to 64 hex digits of the epoch id");

    const verdict = await verifyFirst(dir, p);
    if (!verdict.proceed) {
      if (flag(p, "json")) printJson(verdict.json);
      else process.stdout.write(verdict.text);
      return EXIT.failed;
    }
    const prefix = verdict.unverified ? "UNVERIFIED " : "";
    const latest = readLatestCheckpoint(dir);
    const cp = latest.checkpoint;
    const ctx: Ctx = {
      dir,
      lookup: new BundleLookup(dir),
      tree: await bundleTree(dir),
      cp,
      cache: new ExplainCache(),
    };
    const allOk = (s: readonly Shown[]) => (s.every((x) => x.inclusion.verified) ? EXIT.ok : EXIT.failed);

    if (index !== undefined) {
      if (index >= ctx.tree.size) throw usageError(`--index must be below ${ctx.tree.size}`);
      const s = await show(ctx, index, "entry");
      if (!s) throw usageError(`entry ${index} cannot be read`);
      print(p, [s], verdict.note, {}, prefix, latest);
      return allOk([s]);
    }
    if (tokenId !== undefined) {
      const links = await chainOf(ctx, tokenId);
      if (links === undefined) {
        const msg = `no allow decision with token id ${tokenId} in this bundle`;
        if (flag(p, "json"))
          printJson({
            ...(prefix ? { unverified: true } : { verified: true }),
            tokenId,
            found: false,
            reason: msg,
          });
        else process.stdout.write(`${prefix}${msg}\n`);
        return EXIT.failed;
      }
      const order: [string, number | undefined][] = [
        ["request", links.request],
        ["decision", links.decision],
        ["epoch", links.epoch],
        ["token issued", links.issued],
        ["token redeemed", links.redeemed],
        ["execution report", links.report],
        ...links.denials.map((d): [string, number] => ["denial naming it", d]),
      ];
      const shown: Shown[] = [];
      for (const [role, i] of order) {
        if (i === undefined) continue;
        const s = await show(ctx, i, role);
        if (s) shown.push(s);
      }
      const missing = order
        .slice(0, 6)
        .filter(([, i]) => i === undefined)
        .map(([r]) => r);
      const complete = missing.length === 0;
      const header = `${verdict.note}\ntoken ${tokenId}: ${complete ? "complete chain" : `incomplete chain, no ${missing.join(", ")}`}`;
      print(p, shown, header, { tokenId, found: true, complete, missing, links }, prefix, latest);
      return allOk(shown);
    }
    const eps = await epochsMatching(ctx, epoch!);
    if (eps.length !== 1) {
      const msg =
        eps.length === 0
          ? `no epoch with an id starting ${epoch}`
          : `${eps.length} epochs match ${epoch}: give more digits`;
      if (flag(p, "json"))
        printJson({ ...(prefix ? { unverified: true } : { verified: true }), found: false, reason: msg });
      else process.stdout.write(`${prefix}${msg}\n`);
      return eps.length === 0 ? EXIT.failed : EXIT.usage;
    }
    const ep = eps[0]!;
    const s = await show(ctx, ep.index, "epoch");
    if (!s) throw usageError(`entry ${ep.index} cannot be read`);
    print(
      p,
      [s],
      `${verdict.note}\ndecided on this epoch: ${ep.allows} allow(s), ${ep.denials} denial(s)`,
      { allows: ep.allows, denials: ep.denials },
      prefix,
      latest,
    );
    return allOk([s]);
  },
};
