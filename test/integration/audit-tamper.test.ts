import { randomBytes } from "node:crypto";
import {
  appendFile,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { basename, join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  segmentName,
} from "../../src/lineage/record.js";
import { execgate } from "../helpers/cli.js";
import { describeTpm } from "../helpers/hardware.js";
import { buildTamperWorld, type TamperCase, type TamperWorld, tamperCases } from "../helpers/tamper.js";

/**
 * The log side of the tamper matrix (issue 14): every file kind of a real exported bundle ×
 * every change that applies, each exit 1 naming its root cause first. Enrollment rows live in
 * their own file with the same helper.
 */

async function flip(path: string, at: number): Promise<void> {
  const b = await readFile(path);
  const i = at < 0 ? b.length + at : at;
  b[i]! ^= 0x01;
  await writeFile(path, b);
}
async function cut(path: string, bytes: number): Promise<void> {
  const b = await readFile(path);
  await truncate(path, b.length - bytes);
}
async function swap(a: string, b: string): Promise<void> {
  await rename(a, `${a}.swap`);
  await rename(b, a);
  await rename(`${a}.swap`, b);
}
async function replaceFrom(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await cp(from, to, { recursive: true });
}
async function firstSegment(dir: string): Promise<string> {
  return join(dir, "segments", (await readdir(join(dir, "segments"))).sort()[0]!);
}
async function files(dir: string, sub: string): Promise<string[]> {
  const all = (await readdir(join(dir, sub), { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
  return all.sort();
}
/**
 * Rewrites a bundle's one segment as three valid segments, starting at entries 0, `a` and `b`
 * (what a daemon that rolled its segment over would have exported): the same records, each new
 * segment with its own header. Returns the three paths.
 */
async function splitSegment(dir: string, a: number, b: number): Promise<string[]> {
  const path = await firstSegment(dir);
  const data = await readFile(path);
  const offsets: number[] = [];
  for (let at = SEGMENT_HEADER_BYTES; at < data.length; ) {
    offsets.push(at);
    at += RECORD_HEADER_BYTES + data.readUInt32BE(at);
  }
  offsets.push(data.length);
  await rm(path);
  const out: string[] = [];
  for (const [first, last] of [
    [0, a],
    [a, b],
    [b, offsets.length - 1],
  ] as const) {
    const header = Buffer.alloc(SEGMENT_HEADER_BYTES);
    header.set(SEGMENT_MAGIC);
    header.writeBigUInt64BE(BigInt(first), 8);
    const file = join(dir, "segments", segmentName(first));
    await writeFile(file, Buffer.concat([header, data.subarray(offsets[first], offsets[last])]));
    out.push(file);
  }
  return out;
}
/** A signed note whose last signature keeps its key id and carries random bytes. */
async function forgeSignature(path: string): Promise<void> {
  const lines = (await readFile(path, "utf8")).split("\n");
  const k = lines.findLastIndex((l) => l.startsWith("— "));
  const [dash, name, b64] = lines[k]!.split(" ");
  const sig = Buffer.from(b64!, "base64");
  randomBytes(sig.length - 4).copy(sig, 4);
  lines[k] = `${dash} ${name} ${sig.toString("base64")}`;
  await writeFile(path, lines.join("\n"));
}

const unpinned = (w: TamperWorld) => ["--trust", w.trust];
const pinned = (w: TamperWorld) => ["--trust", w.trust, "--vkey", w.vkey];

const CASES: TamperCase[] = [
  // segments/
  {
    name: "segment: a byte flipped in a record",
    check: "record",
    change: async (d) => flip(await firstSegment(d), SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 3),
  },
  {
    name: "segment: a byte flipped in the header",
    check: "segment_header",
    change: async (d) => flip(await firstSegment(d), 0),
  },
  {
    name: "segment: truncated mid-record",
    check: "record",
    change: async (d) => cut(await firstSegment(d), 7),
  },
  { name: "segment: deleted", check: "missing_file", change: async (d) => rm(await firstSegment(d)) },
  {
    name: "segment: renamed",
    check: "segment_name",
    change: async (d) => rename(await firstSegment(d), join(d, "segments", "00000000000000000001.seg")),
  },
  {
    name: "segment: swapped with checkpoints.log",
    check: "segment_header",
    change: async (d) => swap(await firstSegment(d), join(d, "checkpoints.log")),
  },
  {
    name: "segment: from another host",
    check: "checkpoint_root",
    change: async (d, w) => {
      await rm(join(d, "segments"), { recursive: true });
      await cp(join(w.other, "segments"), join(d, "segments"), { recursive: true });
    },
  },
  {
    name: "segment: rolled back to the older export",
    check: "checkpoint_size",
    change: async (d, w) => replaceFrom(join(w.old, "segments"), join(d, "segments")),
  },
  {
    name: "segment: the fork's",
    // The fork is shorter or longer than the signed sizes depending on how many epochs each run
    // had: the signed checkpoints then disagree by root or by size.
    check: ["checkpoint_root", "checkpoint_size"],
    change: async (d, w) => replaceFrom(join(w.fork, "segments"), join(d, "segments")),
  },
  {
    name: "segment: the middle one of three deleted",
    check: "segment_sequence",
    change: async (d) => rm((await splitSegment(d, 40, 80))[1]!),
  },
  {
    name: "segment: another host's log interleaved (its entries 5..9 in place of ours)",
    // Their entries name leaf hashes of their own log: the back-references or, where an entry
    // names nothing earlier, the signed roots disagree first.
    check: ["backref", "checkpoint_root"],
    change: async (d, w) => {
      const theirs = join(d, "theirs");
      await cp(w.other, theirs, { recursive: true });
      const middle = (await splitSegment(theirs, 5, 10))[1]!;
      const ours = await splitSegment(d, 5, 10);
      await rm(ours[1]!);
      await cp(middle, ours[1]!);
      await rm(theirs, { recursive: true });
    },
  },
  {
    name: "tile: an empty directory of tile shape for a level the log lacks",
    check: "unknown_file",
    change: async (d) => mkdir(join(d, "tile", "9")),
  },
  {
    name: "segment: junk beside it",
    check: "unknown_file",
    change: async (d) => writeFile(join(d, "segments", "notes.txt"), "x"),
  },
  // checkpoints.log
  {
    name: "checkpoints.log: a byte flipped",
    check: "checkpoint_log",
    change: async (d) => flip(join(d, "checkpoints.log"), 40),
  },
  {
    name: "checkpoints.log: truncated",
    check: "checkpoint_log",
    change: async (d) => cut(join(d, "checkpoints.log"), 9),
  },
  {
    name: "checkpoints.log: deleted",
    check: "missing_file",
    change: async (d) => rm(join(d, "checkpoints.log")),
  },
  {
    name: "checkpoints.log: swapped with checkpoint",
    check: "checkpoint_log",
    change: async (d) => swap(join(d, "checkpoints.log"), join(d, "checkpoint")),
  },
  {
    name: "checkpoints.log: from another host",
    check: "checkpoint_signature",
    change: async (d, w) => replaceFrom(join(w.other, "checkpoints.log"), join(d, "checkpoints.log")),
  },
  {
    name: "checkpoints.log: rolled back to the older export",
    check: "checkpoint_coverage",
    change: async (d, w) => replaceFrom(join(w.old, "checkpoints.log"), join(d, "checkpoints.log")),
  },
  {
    name: "checkpoints.log: the fork's",
    check: "checkpoint_root",
    change: async (d, w) => replaceFrom(join(w.fork, "checkpoints.log"), join(d, "checkpoints.log")),
  },
  // checkpoint
  {
    name: "checkpoint: a byte flipped in the signature",
    check: "checkpoint_file_signature",
    change: async (d) => flip(join(d, "checkpoint"), -6),
  },
  {
    name: "checkpoint: size changed",
    check: "checkpoint_file_signature",
    change: async (d) => {
      const t = (await readFile(join(d, "checkpoint"), "utf8")).split("\n");
      t[1] = String(Number(t[1]) - 1);
      await writeFile(join(d, "checkpoint"), t.join("\n"));
    },
  },
  {
    name: "checkpoint: signature forged",
    check: "checkpoint_file_signature",
    change: async (d) => forgeSignature(join(d, "checkpoint")),
  },
  {
    name: "checkpoint: truncated",
    check: "checkpoint_file_signature",
    change: async (d) => cut(join(d, "checkpoint"), 20),
  },
  { name: "checkpoint: deleted", check: "missing_file", change: async (d) => rm(join(d, "checkpoint")) },
  {
    name: "checkpoint: from another host",
    check: "checkpoint_file_signature",
    change: async (d, w) => replaceFrom(join(w.other, "checkpoint"), join(d, "checkpoint")),
  },
  {
    name: "checkpoint: rolled back to the older export",
    check: "checkpoint_file_stale",
    change: async (d, w) => replaceFrom(join(w.old, "checkpoint"), join(d, "checkpoint")),
  },
  {
    name: "checkpoint: the fork's (same key, same size range)",
    check: "checkpoint_file_fork",
    change: async (d, w) => replaceFrom(join(w.fork, "checkpoint"), join(d, "checkpoint")),
  },
  {
    name: "checkpoint: a second signature line appended",
    check: "checkpoint_file_stale",
    change: async (d, w) => {
      const other = (await readFile(join(w.other, "checkpoint"), "utf8"))
        .split("\n")
        .filter((l) => l.startsWith("— "));
      await appendFile(join(d, "checkpoint"), `${other[0]}\n`);
    },
  },
  // log.vkey
  { name: "log.vkey: a byte flipped", check: "log_vkey", change: async (d) => flip(join(d, "log.vkey"), -8) },
  { name: "log.vkey: truncated", check: "log_vkey", change: async (d) => cut(join(d, "log.vkey"), 10) },
  { name: "log.vkey: deleted", check: "missing_file", change: async (d) => rm(join(d, "log.vkey")) },
  {
    name: "log.vkey: swapped with origin",
    check: "log_vkey",
    change: async (d) => swap(join(d, "log.vkey"), join(d, "origin")),
  },
  {
    name: "log.vkey: from another host (pinned key)",
    check: "log_vkey",
    change: async (d, w) => replaceFrom(join(w.other, "log.vkey"), join(d, "log.vkey")),
  },
  {
    name: "log.vkey: from another host (no pin)",
    check: "checkpoint_signature",
    args: unpinned,
    change: async (d, w) => replaceFrom(join(w.other, "log.vkey"), join(d, "log.vkey")),
  },
  {
    name: "log.vkey: deleted (no pin)",
    check: "missing_file",
    args: unpinned,
    change: async (d) => rm(join(d, "log.vkey")),
  },
  // origin
  { name: "origin: a byte flipped", check: "origin_file", change: async (d) => flip(join(d, "origin"), 2) },
  { name: "origin: truncated", check: "origin_file", change: async (d) => cut(join(d, "origin"), 1) },
  { name: "origin: deleted", check: "missing_file", change: async (d) => rm(join(d, "origin")) },
  {
    name: "origin: from another host",
    check: "origin_file",
    change: async (d, w) => replaceFrom(join(w.other, "origin"), join(d, "origin")),
  },
  // tile/
  {
    name: "tile: a byte flipped in a hash tile",
    check: "tile_mismatch",
    change: async (d) => flip(join(d, "tile", "0", "000"), 100),
  },
  {
    name: "tile: a byte flipped in an entry bundle",
    check: "tile_mismatch",
    change: async (d) => flip(join(d, "tile", "entries", "000"), 100),
  },
  {
    name: "tile: truncated",
    check: "tile_mismatch",
    change: async (d) => cut(join(d, "tile", "0", "000"), 32),
  },
  {
    name: "tile: one deleted",
    check: "tile_missing",
    change: async (d) => rm(join(d, "tile", "entries", "000")),
  },
  {
    name: "tile: none at all",
    check: "tile_missing",
    change: async (d) => rm(join(d, "tile"), { recursive: true }),
  },
  {
    name: "tile: two swapped",
    check: "tile_mismatch",
    change: async (d) => swap(join(d, "tile", "0", "000"), join(d, "tile", "entries", "000")),
  },
  {
    name: "tile: an extra one",
    check: "tile_extra",
    change: async (d) => cp(join(d, "tile", "0", "000"), join(d, "tile", "0", "009")),
  },
  {
    name: "tile: rolled back to the older export",
    check: "tile_missing",
    change: async (d, w) => replaceFrom(join(w.old, "tile"), join(d, "tile")),
  },
  {
    name: "tile: from another host",
    check: "tile_missing",
    change: async (d, w) => replaceFrom(join(w.other, "tile"), join(d, "tile")),
  },
  {
    name: "tile: junk in tile/",
    check: "unknown_file",
    change: async (d) => writeFile(join(d, "tile", "README"), "x"),
  },
  // blobs/
  {
    name: "blob: a byte flipped",
    check: "policy_blob",
    change: async (d) => flip((await files(d, "blobs"))[0]!, 0),
  },
  {
    name: "blob: truncated",
    check: "policy_blob",
    change: async (d) => cut((await files(d, "blobs"))[0]!, 1),
  },
  {
    name: "blob: two swapped",
    check: "policy_blob",
    change: async (d) => {
      const [a, b] = await files(d, "blobs");
      await swap(a!, b!);
    },
  },
  {
    name: "blob: replaced by another host's",
    check: "policy_blob",
    change: async (d, w) => {
      const [a] = await files(d, "blobs");
      // A blob only the other host has (both hosts store the same policy file).
      const ours = new Set((await readdir(join(d, "blobs"))).map((n) => n));
      const o = (await files(w.other, "blobs")).find((p) => !ours.has(basename(p)));
      await cp(o!, a!);
    },
  },
  {
    // The blobs the log references are checked by what references them (policy_blob above);
    // any other is checked by its digest alone.
    name: "blob: one nothing references, altered",
    check: "blob_digest",
    change: async (d, w) => {
      const ours = new Set(await readdir(join(d, "blobs")));
      const o = (await files(w.other, "blobs")).find((p) => !ours.has(basename(p)));
      await cp(o!, join(d, "blobs", basename(o!)));
      await flip(join(d, "blobs", basename(o!)), 0);
    },
  },
  {
    name: "blob: a byte flipped (--log-only)",
    check: "blob_digest",
    args: (w) => ["--log-only", "--vkey", w.vkey],
    change: async (d) => flip((await files(d, "blobs"))[0]!, 0),
  },
  {
    name: "blob: every blob deleted",
    check: "policy_blob",
    change: async (d) => rm(join(d, "blobs"), { recursive: true }),
  },
  {
    name: "blob: junk name",
    check: "unknown_file",
    change: async (d) => writeFile(join(d, "blobs", "not-a-digest"), "x"),
  },
  // anywhere
  {
    name: "junk at the top level",
    check: "unknown_file",
    change: async (d) => writeFile(join(d, "README"), "x"),
  },
  {
    name: "junk in enrollment/",
    check: "unknown_file",
    change: async (d) => writeFile(join(d, "enrollment", "extra.pem"), "x"),
  },
  { name: "an empty directory", check: "unknown_file", change: async (d) => mkdir(join(d, "spare")) },
  {
    name: "a symlink",
    check: "unknown_file",
    change: async (d) => symlink("/etc/hostname", join(d, "blobs", "0".repeat(64))),
  },
  // the whole bundle, against checkpoints the auditor kept
  {
    name: "bundle: rolled back to the older export, newer checkpoint kept",
    check: "checkpoint_rollback",
    target: (w) => w.old,
    change: async () => {},
    args: (w) => [...pinned(w), "--trusted-checkpoint", join(w.bundle, "checkpoint")],
  },
  {
    name: "bundle: kept checkpoint of a fork",
    check: "checkpoint_fork",
    change: async () => {},
    args: (w) => [...pinned(w), "--trusted-checkpoint", join(w.fork, "checkpoint")],
  },
  {
    name: "bundle: kept checkpoint forged",
    check: "trusted_checkpoint_signature",
    change: async () => {},
    args: (w) => [...pinned(w), "--trusted-checkpoint", join(w.dir, "forged.note")],
  },
  {
    name: "bundle: kept checkpoint from another host",
    check: "trusted_checkpoint_signature",
    change: async () => {},
    args: (w) => [...pinned(w), "--trusted-checkpoint", join(w.other, "checkpoint")],
  },
];

let world: TamperWorld | undefined;
let dispose: (() => Promise<void>) | undefined;

describeTpm("audit verify on tampered bundles: every log-side file kind × every change", () => {
  beforeAll(async () => {
    const b = await buildTamperWorld();
    world = b.world;
    dispose = b.dispose;
    // A kept note whose signature is forged (the case above checks the copy, this file the flag).
    await cp(join(world.bundle, "checkpoint"), join(world.dir, "forged.note"));
    await forgeSignature(join(world.dir, "forged.note"));
  }, 240_000);
  afterAll(async () => {
    await dispose?.();
  });

  it("the honest bundle with its segment split in three (as a rolled-over log exports) still verifies", async () => {
    const w = world!;
    const d = join(w.dir, "split-honest");
    await cp(w.bundle, d, { recursive: true });
    expect(await splitSegment(d, 40, 80)).toHaveLength(3);
    const r = await execgate(["audit", "verify", d, "--json", ...pinned(w)]);
    expect((JSON.parse(r.stdout) as { failures: unknown[] }).failures).toEqual([]);
    expect(r.code).toBe(0);
  });

  it("the honest bundle verifies: exit 0, the checkpoint file is the latest, every file verified", async () => {
    const w = world!;
    const r = await execgate(["audit", "verify", w.bundle, "--json", ...pinned(w)]);
    const v = JSON.parse(r.stdout) as {
      failures: unknown[];
      latestCheckpoint: { size: number };
      entries: number;
      unverified: string[];
    };
    expect(v.failures).toEqual([]);
    expect(r.code).toBe(0);
    const note = (await readFile(join(w.bundle, "checkpoint"), "utf8")).split("\n");
    expect(v.latestCheckpoint.size).toBe(Number(note[1]));
    expect(v.entries).toBeGreaterThan(256);
    expect(v.unverified).toEqual([]);
    // the other bundles are honest too: the tamper rows use them as genuine material
    for (const b of [w.old, w.other])
      expect((await execgate(["audit", "verify", b, "--log-only"])).code, b).toBe(0);
    expect((await execgate(["audit", "verify", w.fork, "--log-only", "--vkey", w.vkey])).code).toBe(0);
  });

  tamperCases(() => world!, CASES);

  it("the text report names the root cause first: a flipped segment byte is `record`", async () => {
    const w = world!;
    const d = join(w.dir, "text-report");
    await cp(w.bundle, d, { recursive: true });
    await flip(await firstSegment(d), SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 3);
    const r = await execgate(["audit", "verify", d, ...pinned(w)]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^FAILED/);
    expect(lines[1]).toMatch(/^first failure: record /);
  });

  it("a missing path, a file and a directory that is no bundle: 'not a lineage bundle', exit 3", async () => {
    const w = world!;
    const empty = await mkdtemp(join(w.dir, "empty-"));
    for (const p of [join(w.dir, "nope"), join(w.bundle, "origin"), empty]) {
      const r = await execgate(["audit", "verify", p]);
      expect(r.code, p).toBe(3);
      expect(r.stderr).toContain(`not a lineage bundle: ${p}`);
      expect(r.stderr).not.toContain("ENOENT");
    }
  });
});
