import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  formatCheckpoint,
  openCheckpoint,
  parseCheckpoint,
  signCheckpoint,
} from "../../src/lineage/checkpoint.js";
import { leafHash } from "../../src/lineage/hash.js";
import { MerkleTree } from "../../src/lineage/merkle.js";
import {
  type NoteVerifier,
  openNote,
  parseNote,
  parseVerifierKey,
  signNote,
  verifierFromSigner,
} from "../../src/lineage/note.js";
import {
  signerFromNoteSkey,
  softwareEcdsaP256Signer,
  softwareEd25519Signer,
} from "../../src/lineage/signer.js";
import { corpusPath } from "../helpers/corpus.js";

/** test/corpus/checkpoint (see its MANIFEST.md); a missing file fails these tests. */
const CORPUS = corpusPath("checkpoint");
const read = (p: string): string => readFileSync(join(CORPUS, p), "utf8");
const readBytes = (p: string): Uint8Array => new Uint8Array(readFileSync(join(CORPUS, p)));
const json = <T>(p: string): T => JSON.parse(read(p)) as T;

function errorOf(f: () => unknown): { code: string; message: string } | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    expect(e).toMatchObject({ name: "ExecgateError" });
    return e as { code: string; message: string };
  }
}

describe("C2SP spec examples", () => {
  it("signed-note example verifies with its vkey (key ID 530d903a)", () => {
    const v = parseVerifierKey(read("c2sp/signed-note-example.vkey").trim());
    expect(v.keyId.toString(16)).toBe("530d903a");
    const opened = openNote(readBytes("c2sp/signed-note-example.note"), [v]);
    expect(opened.text).toBe("This is an example message.\n");
    expect(opened.verified.map((s) => s.name)).toEqual(["example.com/foo"]);
  });

  it("intro note: the signature block starts after the LAST blank line", () => {
    const n = parseNote(readBytes("c2sp/signed-note-intro.note"));
    expect(n.text.split("\n")).toEqual([
      "Ognuno sta solo sul cuor della terra",
      "trafitto da un raggio di sole:",
      "",
      "ed è subito sera.",
      "",
    ]);
    expect(n.signatures.map((s) => s.name)).toEqual(["quasimodo.example/salvatore"]);
  });

  it("tlog-checkpoint example parses (parse-only: no key published)", () => {
    const n = parseNote(readBytes("c2sp/tlog-checkpoint-example.note"));
    const cp = parseCheckpoint(n.text);
    expect(cp.origin).toBe("example.com/behind-the-sofa");
    expect(cp.size).toBe(20852163);
    expect(cp.rootHash.length).toBe(32);
    expect(n.signatures[0]!.keyId.toString(16)).toBe("33de0ae");
  });

  it("cosignature example: two lines, the cosignature carries a timestamp and a 64-byte signature", () => {
    const n = parseNote(readBytes("c2sp/tlog-cosignature-example.note"));
    expect(n.signatures).toHaveLength(2);
    const w = n.signatures[1]!;
    expect(w.name).toBe("witness.example.com/w1");
    expect(w.keyId.toString(16)).toBe("8d66cf3f");
    expect(w.signature.length).toBe(72);
    expect(Buffer.from(w.signature.subarray(0, 8)).readBigUInt64BE()).toBe(1679315147n);
    // Unknown keys are ignored; with no known key at all the note is rejected.
    const someKey = verifierFromSigner(softwareEd25519Signer("example.com/behind-the-sofa"));
    expect(errorOf(() => openNote(readBytes("c2sp/tlog-cosignature-example.note"), [someKey]))?.code).toBe(
      "verification_failed",
    );
  });
});

interface NoteVectors {
  keys: Record<string, { vkey: string; skey?: string }>;
  badVerifierKeys: string[];
  sign: { text: string; skey: string; want: string };
  open: {
    msg?: string;
    msgBase64?: string;
    verifiers: string[];
    wantErr: string | null;
    wantText?: string;
    wantVerified?: string[];
    wantUnverified?: string[];
    why?: string;
  }[];
}

describe("golang.org/x/mod sumdb/note vectors", () => {
  const nv = json<NoteVectors>("golang-mod/note-vectors.json");
  const peter = nv.keys.PeterNeumann!.vkey;

  it("verifier keys parse and their key IDs match", () => {
    for (const { vkey } of Object.values(nv.keys)) expect(parseVerifierKey(vkey).vkey).toBe(vkey);
  });

  it("rejects bad verifier keys: wrong length, unknown type, every proper substring, every byte incremented", () => {
    for (const bad of nv.badVerifierKeys.slice(0, 2)) {
      expect(errorOf(() => parseVerifierKey(bad.split(" ")[0]!))).toBeDefined();
    }
    for (let i = 0; i < peter.length; i++) {
      for (let j = i; j <= peter.length; j++) {
        if (i === 0 && j === peter.length) continue;
        expect(errorOf(() => parseVerifierKey(peter.slice(i, j)))).toBeDefined();
      }
      const bumped = peter.slice(0, i) + String.fromCharCode(peter.charCodeAt(i) + 1) + peter.slice(i + 1);
      expect(errorOf(() => parseVerifierKey(bumped))).toBeDefined();
    }
  });

  it("signing reproduces the golden note byte for byte", async () => {
    const signer = signerFromNoteSkey(nv.sign.skey);
    expect(await signNote(nv.sign.text, [signer])).toBe(nv.sign.want);
    await expect(signNote("abc", [signer])).rejects.toMatchObject({ code: "malformed" });
  });

  nv.open.forEach((c, i) => {
    it(`open case ${i}${c.why ? ` (${c.why})` : ""} → ${c.wantErr ?? "ok"}`, () => {
      const msg = c.msgBase64 !== undefined ? new Uint8Array(Buffer.from(c.msgBase64, "base64")) : c.msg!;
      let verifiers: NoteVerifier[];
      try {
        verifiers = c.verifiers.map(parseVerifierKey);
      } catch {
        throw new Error("vector verifier keys must parse");
      }
      const err = errorOf(() => openNote(msg, verifiers));
      if (c.wantErr === null) {
        expect(err).toBeUndefined();
        const opened = openNote(msg, verifiers);
        if (c.wantText !== undefined) expect(opened.text).toBe(c.wantText);
        if (c.wantVerified !== undefined) expect(opened.verified.map((s) => s.name)).toEqual(c.wantVerified);
        if (c.wantUnverified !== undefined) {
          expect(opened.unverified.map((s) => s.name)).toEqual(c.wantUnverified.map((n) => n.split(" ")[0]));
        }
      } else {
        expect(err).toBeDefined();
        const code = {
          "malformed note": "malformed",
          "note has no verifiable signatures": "verification_failed",
          "ambiguous key EnochRoot+af0cfe78": "malformed",
          "invalid signature for key PeterNeumann+c74f20a3": "verification_failed",
        }[c.wantErr];
        expect(err?.code).toBe(code);
        if (c.wantErr.includes("+")) expect(err?.message).toContain(c.wantErr.split(" ").pop());
      }
    });
  });

  it("peter-enoch.note: both signatures verify", () => {
    const opened = openNote(
      readBytes("golang-mod/peter-enoch.note"),
      Object.values(nv.keys).map((k) => parseVerifierKey(k.vkey)),
    );
    expect(opened.verified.map((s) => s.name)).toEqual(["PeterNeumann", "EnochRoot"]);
  });
});

describe("transparency-dev/formats vectors", () => {
  it("a real sum.golang.org checkpoint verifies; wrong origin fails", () => {
    const v = parseVerifierKey(read("transparency-dev-formats/sum.golang.org.vkey").trim());
    const note = readBytes("transparency-dev-formats/sumdb-6476701.note");
    const { checkpoint } = openCheckpoint(note, "go.sum database tree", v);
    expect(checkpoint.size).toBe(6476701);
    expect(errorOf(() => openCheckpoint(note, "other origin", v))?.code).toBe("verification_failed");
  });

  it("cosigned note: four known signatures verify, random1/random2 are ignored", () => {
    const keys = [
      read("transparency-dev-formats/sum.golang.org.vkey").trim(),
      ...read("transparency-dev-formats/witness-vkeys.txt").trim().split("\n"),
    ].map(parseVerifierKey);
    const opened = openNote(readBytes("transparency-dev-formats/sumdb-6476701-cosigned.note"), keys);
    expect(opened.verified.map((s) => [s.name, s.keyId.toString(16).padStart(8, "0")])).toEqual([
      ["sum.golang.org", "033de0ae"],
      ["monkeys", "db4d9f7e"],
      ["bananas", "cf639f13"],
      ["witness", "f13a86db"],
    ]);
    expect(opened.unverified.map((s) => s.name)).toEqual(["random1", "random2"]);
    const [logKey, ...others] = keys;
    expect(
      openCheckpoint(
        readBytes("transparency-dev-formats/sumdb-6476701-cosigned.note"),
        "go.sum database tree",
        logKey!,
        others,
      ).checkpoint.size,
    ).toBe(6476701);
  });

  interface BodyVectors {
    marshal: { origin: string; size: number; hashAscii: string; want: string }[];
    unmarshal: {
      desc: string;
      m: string;
      want?: { origin: string; size: number; hashAscii: string };
      rest?: string | null;
      wantErr?: boolean;
    }[];
    extension: {
      raw: string;
      want: { origin: string; size: number; hashAscii: string; extensionLines: string[] };
    };
  }
  const bv = json<BodyVectors>("transparency-dev-formats/checkpoint-body-vectors.json");
  const anyLength = { rootHashLength: null } as const;

  it("marshal vectors", () => {
    for (const m of bv.marshal) {
      const rootHash = new TextEncoder().encode(m.hashAscii);
      expect(formatCheckpoint({ origin: m.origin, size: m.size, rootHash, extensions: [] })).toBe(m.want);
    }
  });

  for (const u of bv.unmarshal) {
    // Deliberate deviation: C2SP says extension lines are non-empty, so trailing blank lines fail.
    const wantErr = u.wantErr === true || u.desc === "valid with trailing newlines";
    it(`unmarshal: ${u.desc} → ${wantErr ? "error" : "ok"}`, () => {
      const err = errorOf(() => parseCheckpoint(u.m, anyLength));
      if (wantErr) {
        expect(err).toBeDefined();
        return;
      }
      const cp = parseCheckpoint(u.m, anyLength);
      expect(cp.origin).toBe(u.want!.origin);
      expect(cp.size).toBe(u.want!.size);
      expect(new TextDecoder().decode(cp.rootHash)).toBe(u.want!.hashAscii);
      const rest = cp.extensions.length === 0 ? null : `${cp.extensions.join("\n")}\n`;
      expect(rest).toBe(u.rest ?? null);
    });
  }

  it("extension lines", () => {
    const cp = parseCheckpoint(bv.extension.raw, anyLength);
    expect(cp.extensions).toEqual(bv.extension.want.extensionLines);
    expect(formatCheckpoint(cp)).toBe(bv.extension.raw);
  });

  interface ParseCases {
    verifiers: { logVerifier: string; otherVerifiers: string[] };
    cases: {
      desc: string;
      expectedOrigin: string;
      note: string;
      wantErr: boolean;
      wantVerifiedSigs: number;
    }[];
  }
  const pc = json<ParseCases>("transparency-dev-formats/parse-checkpoint-cases.json");
  const logV = parseVerifierKey(pc.verifiers.logVerifier);
  const others = pc.verifiers.otherVerifiers.map(parseVerifierKey);
  for (const c of pc.cases) {
    it(`ParseCheckpoint: ${c.desc} → ${c.wantErr ? "error" : `${c.wantVerifiedSigs} verified`}`, () => {
      // These bodies carry a 6-byte "root" ("abcdef"), hence rootHashLength: null.
      const err = errorOf(() => openCheckpoint(c.note, c.expectedOrigin, logV, others, anyLength));
      expect(err !== undefined).toBe(c.wantErr);
      if (!c.wantErr) {
        expect(openCheckpoint(c.note, c.expectedOrigin, logV, others, anyLength).note.verified).toHaveLength(
          c.wantVerifiedSigs,
        );
      } else if (c.wantVerifiedSigs > 0) {
        // The note itself opens; the checkpoint-level check is what fails.
        expect(openNote(c.note, [logV, ...others]).verified).toHaveLength(c.wantVerifiedSigs);
      }
    });
  }
});

describe("golang tlog tree-note vectors (legacy go.sum body)", () => {
  const tv = json<{
    tree: { N: number; hashBase64: string; formatted: string };
    parseTreeBad: string[];
    parseTreeGoodWithJunk: string[];
  }>("golang-mod/tlog-tree-note-vectors.json");

  it("formats and parses the golden tree", () => {
    const rootHash = new Uint8Array(Buffer.from(tv.tree.hashBase64, "base64"));
    expect(rootHash).toEqual(leafHash(new TextEncoder().encode("hello world")));
    expect(
      formatCheckpoint({ origin: "go.sum database tree", size: tv.tree.N, rootHash, extensions: [] }),
    ).toBe(tv.tree.formatted);
    expect(parseCheckpoint(tv.tree.formatted).size).toBe(tv.tree.N);
  });

  it("rejects bad bodies (the origin mismatch is caught by openCheckpoint, not the body parser)", () => {
    const [wrongOrigin, hexSize, badHash] = tv.parseTreeBad as [string, string, string];
    expect(parseCheckpoint(wrongOrigin).origin).not.toBe("go.sum database tree");
    expect(errorOf(() => parseCheckpoint(hexSize))).toBeDefined();
    expect(errorOf(() => parseCheckpoint(badHash))).toBeDefined();
  });

  it("junk after the body: newline-terminated junk is an extension line; unterminated junk is rejected", () => {
    expect(parseCheckpoint(`${tv.tree.formatted}JOE\n`).extensions).toEqual(["JOE"]);
    expect(parseCheckpoint(`${tv.tree.formatted}${"JOE\n".repeat(1000)}`).extensions).toHaveLength(1000);
    // golang's ParseTree ignores this; a C2SP note text must end with a newline, so we refuse it.
    expect(errorOf(() => parseCheckpoint(`${tv.tree.formatted}JOE`))).toBeDefined();
  });
});

describe("tessera testdata log: every checkpoint verifies and its root recomputes from the entries", () => {
  const vkey = parseVerifierKey(read("tessera-testdata-log/tessera-log.vkey").trim());
  const expected = json<{ origin: string; leavesInOrder: string[]; leafHashesHex: string[] }>(
    "tessera-testdata-log/expected.json",
  );

  /** C2SP tlog-tiles entry bundle: repeated (u16 big-endian length, bytes). */
  function entriesOf(bundle: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let o = 0;
    while (o < bundle.length) {
      const n = (bundle[o]! << 8) | bundle[o + 1]!;
      out.push(bundle.subarray(o + 2, o + 2 + n));
      o += 2 + n;
    }
    expect(o).toBe(bundle.length);
    return out;
  }

  for (let size = 0; size <= 15; size++) {
    it(`checkpoint.${size}`, () => {
      const { checkpoint } = openCheckpoint(
        readBytes(`tessera-testdata-log/checkpoint.${size}`),
        expected.origin,
        vkey,
      );
      expect(checkpoint.size).toBe(size);
      const tree = new MerkleTree();
      if (size > 0) {
        const entries = entriesOf(readBytes(`tessera-testdata-log/tile/entries/000.p/${size}`));
        expect(entries.map((e) => new TextDecoder().decode(e))).toEqual(
          expected.leavesInOrder.slice(0, size),
        );
        const tile = readBytes(`tessera-testdata-log/tile/0/000.p/${size}`);
        entries.forEach((e, i) => {
          const h = leafHash(e);
          expect(h).toEqual(tile.subarray(i * 32, i * 32 + 32));
          expect(Buffer.from(h).toString("hex")).toBe(expected.leafHashesHex[i]);
          tree.append(h);
        });
      }
      expect(tree.root()).toEqual(checkpoint.rootHash);
    });
  }

  it("'checkpoint' is the latest (size 15)", () => {
    expect(read("tessera-testdata-log/checkpoint")).toBe(read("tessera-testdata-log/checkpoint.15"));
  });
});

describe("our own signers", () => {
  for (const make of [softwareEd25519Signer, softwareEcdsaP256Signer]) {
    it(`${make.name}: sign → vkey → open, tamper fails`, async () => {
      const signer = make("execgate.example/lineage");
      const v = verifierFromSigner(signer);
      expect(parseVerifierKey(v.vkey).keyId).toBe(v.keyId);
      const cp = {
        origin: "execgate.example/lineage",
        size: 3,
        rootHash: new Uint8Array(32).fill(7),
        extensions: [],
      };
      const note = await signCheckpoint(cp, [signer]);
      const parsed = parseVerifierKey(v.vkey);
      expect(openCheckpoint(note, cp.origin, parsed).checkpoint.size).toBe(3);
      const tampered = note.replace("\n3\n", "\n4\n");
      expect(errorOf(() => openCheckpoint(tampered, cp.origin, parsed))?.code).toBe("verification_failed");
    });
  }
});
