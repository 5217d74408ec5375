import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import { openCheckpoint } from "../../src/lineage/checkpoint.js";
import { Checkpointer, type SignedCheckpoint } from "../../src/lineage/checkpointer.js";
import { leafHash } from "../../src/lineage/hash.js";
import { Journal } from "../../src/lineage/journal.js";
import { MerkleTree, rootOfLeaves, verifyConsistency } from "../../src/lineage/merkle.js";
import { verifierFromSigner } from "../../src/lineage/note.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";

/**
 * Fault injection: a child process appends under load (16 concurrent appenders, checkpoints every
 * 15 ms) and prints every resolved append; the parent SIGKILLs it at a random moment, 25 times.
 * After each kill the parent reopens the directory and checks: every append the child saw
 * resolve is present with the same leaf hash, the tree recomputes from the bytes on disk, the
 * latest checkpoint verifies and is consistent with the previous run's latest checkpoint.
 */

const ROOT = join(import.meta.dirname, "../..");
const KILLS = 25;
const ORIGIN = "execgate.test/crash";
let work: string;
let script: string;

/** Transpiles the fixture and the modules it imports (type-stripping only) into a temp dir. */
async function buildFixture(out: string): Promise<string> {
  const files: string[] = [join(ROOT, "test/fixtures/lineage/appender.ts")];
  for (const d of ["src/core", "src/cbor", "src/lineage", "src/native"]) {
    for (const f of await readdir(join(ROOT, d))) if (f.endsWith(".ts")) files.push(join(ROOT, d, f));
  }
  for (const f of files) {
    const js = ts.transpileModule(await readFile(f, "utf8"), {
      fileName: f,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dest = join(out, relative(ROOT, f)).replace(/\.ts$/, ".js");
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, js);
  }
  await writeFile(join(out, "package.json"), '{ "type": "module" }\n');
  // The lineage's lock is a flock through the native addon, found beside the sources.
  await mkdir(join(out, "native"), { recursive: true });
  await symlink(join(ROOT, "native/build"), join(out, "native/build"));
  return join(out, "test/fixtures/lineage/appender.js");
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "execgate-crash-"));
  script = await buildFixture(join(work, "build"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Run {
  readySize: number;
  resolved: Map<number, string>;
  stderr: string;
}

function runAndKill(dir: string, delayMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir, "16"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let stderr = "";
    let killed = false;
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      out += d;
      if (!killed && out.includes("ready ")) {
        killed = true;
        setTimeout(() => child.kill("SIGKILL"), delayMs);
      }
    });
    child.stderr.on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== "SIGKILL") {
        reject(new Error(`child exited with ${code}/${signal}: ${stderr}`));
        return;
      }
      const lines = out.split("\n");
      const readyLine = lines.find((l) => l.startsWith("ready "));
      const resolved = new Map<number, string>();
      for (const l of lines) {
        const m = /^(\d+) ([0-9a-f]{64})$/.exec(l);
        if (m) resolved.set(Number(m[1]), m[2]!);
      }
      resolve({ readySize: Number(readyLine?.slice(6) ?? "-1"), resolved, stderr });
    });
  });
}

describe("lineage crash recovery (SIGKILL under load)", () => {
  it(`keeps every resolved append across ${KILLS} kills`, async () => {
    const dir = join(work, "lineage");
    const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(7));
    const verifier = verifierFromSigner(signer);
    const everResolved = new Map<number, string>();
    let previous: SignedCheckpoint | undefined;
    let lastSize = 0;
    let totalResolved = 0;
    for (let k = 0; k < KILLS; k++) {
      const run = await runAndKill(dir, 5 + Math.floor(Math.random() * 60));
      expect(run.stderr).toBe("");
      expect(run.readySize).toBeGreaterThanOrEqual(lastSize);
      totalResolved += run.resolved.size;
      for (const [i, h] of run.resolved) {
        expect(everResolved.get(i) ?? h).toBe(h);
        everResolved.set(i, h);
      }

      const journal = await Journal.open({ dir, segmentBytes: 32 * 1024 });
      try {
        const cp = await Checkpointer.open({ journal, origin: ORIGIN, signer, now: () => 0 });
        for (const [i, h] of everResolved) {
          expect(i).toBeLessThan(journal.size);
          expect(toHex(journal.leafHash(i))).toBe(h);
        }
        const entries = await journal.readRange(0, journal.size);
        const tree = new MerkleTree();
        for (const e of entries) tree.append(leafHash(e));
        expect(rootOfLeaves(entries.map(leafHash))).toEqual(journal.root());
        expect(tree.root()).toEqual(journal.root());
        const latest = cp.latest();
        if (latest !== undefined) {
          openCheckpoint(latest.note, ORIGIN, verifier);
          expect(latest.checkpoint.rootHash).toEqual(journal.rootAt(latest.checkpoint.size));
          if (previous !== undefined && previous.checkpoint.size > 0) {
            const m = previous.checkpoint.size;
            const n = latest.checkpoint.size;
            expect(n).toBeGreaterThanOrEqual(m);
            verifyConsistency(
              m,
              n,
              previous.checkpoint.rootHash,
              latest.checkpoint.rootHash,
              tree.consistencyProof(m, n),
            );
          }
          previous = latest;
        }
        lastSize = journal.size;
        await cp.close();
      } finally {
        await journal.close();
      }
    }
    process.stderr.write(
      `crash test: ${totalResolved} resolved appends, final size ${lastSize}, last checkpoint ${previous?.checkpoint.size}\n`,
    );
    // The load was real: many appends resolved, and checkpoints were being signed.
    expect(totalResolved).toBeGreaterThan(KILLS * 10);
    expect(previous).toBeDefined();
  }, 120_000);
});
