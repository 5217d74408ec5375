import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { parseCheckpointLog, parseSegment } from "../../src/lineage/bundle-files.js";
import { parseCheckpoint } from "../../src/lineage/checkpoint.js";
import { decodeEntry, encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { openNote, parseNote, parseVerifierKey, verifierFromSigner } from "../../src/lineage/note.js";
import { frameRecord } from "../../src/lineage/record.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";

/** STYLE §3: every parser throws only ExecgateError, whatever the input. */
function onlyExecgateErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ExecgateError)) throw e;
  }
}

const NOTE =
  "example.com/log\n5\nq6yroAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAGHgASNFY=\n\n— example.com/log AAAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=\n";
const VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

/** Mutates a string at code-unit level: replace, insert or delete characters. */
const mutatedString = (base: string): fc.Arbitrary<string> =>
  fc
    .array(
      fc.tuple(
        fc.nat(),
        fc.constantFrom("replace", "insert", "delete"),
        fc.string({ unit: "binary", maxLength: 3 }),
      ),
      { minLength: 1, maxLength: 4 },
    )
    .map((edits) => {
      let s = base;
      for (const [pos, op, text] of edits) {
        const i = pos % (s.length + 1);
        if (op === "replace") s = s.slice(0, i) + text + s.slice(i + text.length);
        else if (op === "insert") s = s.slice(0, i) + text + s.slice(i);
        else s = s.slice(0, i) + s.slice(i + 1);
      }
      return s;
    });

const mutatedBytes = (base: Uint8Array): fc.Arbitrary<Uint8Array> =>
  fc
    .tuple(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(16),
    )
    .map(([edits, cut]) => {
      const b = base.slice(0, Math.max(0, base.length - cut));
      for (const [i, x] of edits) if (b.length > 0) b[i % b.length] = x;
      return b;
    });

describe("lineage parsers throw only ExecgateError", () => {
  const verifier = verifierFromSigner(softwareEd25519Signer("example.com/log"));

  it("parseNote / openNote on mutated notes and arbitrary bytes", () => {
    fc.assert(
      fc.property(mutatedString(NOTE), (s) => {
        onlyExecgateErrors(() => parseNote(s));
        onlyExecgateErrors(() => openNote(s, [verifier]));
        onlyExecgateErrors(() => parseNote(new TextEncoder().encode(s)));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => onlyExecgateErrors(() => parseNote(b))),
      { numRuns: 2000 },
    );
  });

  it("parseVerifierKey on mutated vkeys", () => {
    fc.assert(
      fc.property(mutatedString(VKEY), (s) => onlyExecgateErrors(() => parseVerifierKey(s))),
      { numRuns: 3000 },
    );
  });

  it("parseCheckpoint on mutated bodies", () => {
    fc.assert(
      fc.property(mutatedString(NOTE.slice(0, NOTE.indexOf("\n\n") + 1)), (s) =>
        onlyExecgateErrors(() => parseCheckpoint(s)),
      ),
      { numRuns: 3000 },
    );
  });

  it("decodeEntry, parseSegment and parseCheckpointLog on mutated bytes", () => {
    const entry = encodeEntry(
      makeEntry(
        "epoch",
        { wallMs: 5, monoUs: 6, tpm: { clock: 7, resetCount: 1, restartCount: 2 } },
        {
          quote: new Uint8Array(40),
          issuerKey: new Uint8Array(32),
          verified: true,
          evidence: [new Uint8Array(32)],
        },
      ),
    );
    const segment = new Uint8Array(16 + 8 + entry.length);
    segment.set(new TextEncoder().encode("EXGLSEG1"));
    frameRecord(entry, segment, 16);
    fc.assert(
      fc.property(mutatedBytes(entry), mutatedBytes(segment), (e, s) => {
        onlyExecgateErrors(() => decodeEntry(e));
        onlyExecgateErrors(() => parseSegment({ name: "x.seg", bytes: s }));
        onlyExecgateErrors(() => parseCheckpointLog(s.subarray(16)));
      }),
      { numRuns: 3000 },
    );
    expect(decodeEntry(entry).type).toBe("epoch");
  });
});
