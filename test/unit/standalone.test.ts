import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { CORPUS } from "../helpers/corpus.js";

// A clone of the repository alone must run the suite and explain itself: nothing may point at a
// sibling directory or at a design document kept outside the repository.
const ROOT = join(import.meta.dirname, "../..");
// Spelled in pieces so this file does not match itself.
const FORBIDDEN = [["..", "shared"].join("/"), ["DESIGN", "md"].join(".")];

/** Tracked files plus new ones not yet added (ignored files such as node_modules/ and dist/ excluded). */
function repositoryFiles(): string[] {
  const out = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return [...new Set(out.split("\0").filter((f) => f !== ""))].sort();
}

function readIfPresent(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    // A tracked file deleted in the working tree and not yet committed has nothing to check.
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

describe("the repository stands alone", () => {
  it("no file references a sibling directory or an outside design document", () => {
    const files = repositoryFiles();
    expect(files.length).toBeGreaterThan(100);
    const hits: string[] = [];
    for (const f of files) {
      const bytes = readIfPresent(join(ROOT, f));
      if (bytes === undefined) continue;
      for (const needle of FORBIDDEN) if (bytes.includes(needle)) hits.push(`${f}: ${needle}`);
    }
    expect(hits).toEqual([]);
  });
});

/** `| \`file\` | origin | license | expected | \`sha256\` |` rows of a MANIFEST.md. */
function manifestRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) continue;
    expect(rows.has(m[1]), `${m[1]} listed twice`).toBe(false);
    expect(line.split(/(?<!\\)\|/).length, `${m[1]}: file, origin, license, expected, sha256`).toBe(7);
    rows.set(m[1], m[2]);
  }
  return rows;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      // A symbolic link could lead back out of the repository.
      expect(st.isSymbolicLink(), `${relative(CORPUS, p)} is a symbolic link`).toBe(false);
      if (st.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe("test/corpus: every file has one MANIFEST line with its origin, license, expected result and digest", () => {
  const categories = readdirSync(CORPUS).sort();

  it("holds the categories the tests read", () => {
    expect(categories).toEqual(["checkpoint", "cose", "eventlog", "ima", "merkle", "quote"]);
  });

  it.each(categories)("%s/MANIFEST.md lists exactly the files present, with their sha256", (category) => {
    const dir = join(CORPUS, category);
    const rows = manifestRows(readFileSync(join(dir, "MANIFEST.md"), "utf8"));
    const present = filesUnder(dir).filter((f) => f !== "MANIFEST.md");
    expect([...rows.keys()].sort()).toEqual(present);
    // An ignored file (.gitignore has *.log) would be here but missing from every clone.
    const inGit = new Set(repositoryFiles());
    const ignored = present.filter((f) => !inGit.has(`test/corpus/${category}/${f}`));
    expect(ignored).toEqual([]);
    for (const f of present) {
      const digest = createHash("sha256")
        .update(readFileSync(join(dir, f)))
        .digest("hex");
      expect(digest, f).toBe(rows.get(f));
    }
  });
});
