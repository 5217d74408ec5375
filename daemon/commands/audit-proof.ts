import { toHex } from "../../src/core/hex.js";
import { parseSegment } from "../../src/lineage/bundle-files.js";
import { parseCheckpoint } from "../../src/lineage/checkpoint.js";
import { readBundle } from "../../src/lineage/export.js";
import { leafHash } from "../../src/lineage/hash.js";
import { MerkleTree, verifyConsistency, verifyInclusion } from "../../src/lineage/merkle.js";
import { parseNote } from "../../src/lineage/note.js";
import { flag, type Parsed, parseCommandArgs, printJson, readInput, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";

/** The bundle's tree, rebuilt from its entries (run `audit verify` for the signatures). */
async function treeOf(dir: string): Promise<{ tree: MerkleTree; entries: Uint8Array[] }> {
  const files = await readBundle(dir);
  const entries = files.segments.flatMap((s) => [...parseSegment(s).entries]);
  const tree = new MerkleTree();
  for (const e of entries) tree.append(leafHash(e));
  return { tree, entries };
}

function intArg(p: Parsed, name: string): number | undefined {
  const s = str(p, name);
  if (s === undefined) return undefined;
  if (!/^\d{1,15}$/.test(s)) throw usageError(`--${name} must be a non-negative integer`);
  return Number(s);
}

function bundleDir(p: Parsed): string {
  const dir = p.positionals[0];
  if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
  return dir;
}

export const inclusion: Command = {
  summary: "RFC 9162 inclusion proof of one entry in a bundle's tree, verified against its root",
  usage:
    "DIR --index I [--size N (default: all entries)] [--json]\n" +
    "Exit: 0 the proof verifies, 1 it does not or the bundle is malformed, 2 usage, 3 unreadable bundle.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      { index: { type: "string" }, size: { type: "string" }, json: { type: "boolean" } },
      true,
    );
    const { tree, entries } = await treeOf(bundleDir(p));
    const index = intArg(p, "index");
    const size = intArg(p, "size") ?? tree.size;
    if (index === undefined) throw usageError("--index is required");
    if (size > tree.size || index >= size) throw usageError(`need index < size <= ${tree.size}`);
    const proof = tree.inclusionProof(index, size);
    const root = tree.rootAt(size);
    const leaf = leafHash(entries[index]!);
    let valid = true;
    try {
      verifyInclusion(index, size, leaf, proof, root);
    } catch {
      valid = false;
    }
    const out = { valid, index, size, leafHash: toHex(leaf), root: toHex(root), proof: proof.map(toHex) };
    if (flag(p, "json")) printJson(out);
    else
      process.stdout.write(
        `${valid ? "included" : "NOT included"}: entry ${index} in tree of ${size}, root ${out.root}\n${out.proof.join("\n")}\n`,
      );
    return valid ? EXIT.ok : EXIT.failed;
  },
};

export const consistency: Command = {
  summary: "RFC 9162 consistency proof between two sizes of a bundle's tree (or from a checkpoint you kept)",
  usage:
    "DIR (--from M | --old-checkpoint NOTE_FILE) [--to N (default: all entries)] [--json]\n" +
    "Exit: 0 consistent, 1 not consistent or the bundle / checkpoint is malformed, 2 usage,\n" +
    "  3 unreadable bundle or checkpoint.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      {
        from: { type: "string" },
        to: { type: "string" },
        "old-checkpoint": { type: "string" },
        json: { type: "boolean" },
      },
      true,
    );
    const { tree } = await treeOf(bundleDir(p));
    const oldPath = str(p, "old-checkpoint");
    let from = intArg(p, "from");
    let oldRoot: Uint8Array | undefined;
    if (oldPath !== undefined) {
      const cp = parseCheckpoint(parseNote(await readInput(oldPath, "checkpoint")).text);
      from = cp.size;
      oldRoot = cp.rootHash;
    }
    const to = intArg(p, "to") ?? tree.size;
    if (from === undefined) throw usageError("--from or --old-checkpoint is required");
    if (from > to || to > tree.size) throw usageError(`need from <= to <= ${tree.size}`);
    const proof = tree.consistencyProof(from, to);
    const r1 = oldRoot ?? tree.rootAt(from);
    const r2 = tree.rootAt(to);
    let valid = true;
    try {
      verifyConsistency(from, to, r1, r2, proof);
    } catch {
      valid = false;
    }
    const out = { valid, from, to, oldRoot: toHex(r1), newRoot: toHex(r2), proof: proof.map(toHex) };
    if (flag(p, "json")) printJson(out);
    else
      process.stdout.write(
        `${valid ? "consistent" : "NOT consistent"}: ${from} → ${to}, ${out.oldRoot} → ${out.newRoot}\n`,
      );
    return valid ? EXIT.ok : EXIT.failed;
  },
};
