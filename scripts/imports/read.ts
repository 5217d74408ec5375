import { readdir, readFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import ts from "typescript";
import type { SourceFile } from "./rules.js";

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await tsFiles(p)));
    else if (d.name.endsWith(".ts") && !d.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Every .ts file under src/ and daemon/ of `root` with what it imports (the TypeScript scanner's list). */
export async function sourceFiles(root: string): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  for (const top of ["src", "daemon"]) {
    for (const abs of await tsFiles(join(root, top))) {
      const info = ts.preProcessFile(await readFile(abs, "utf8"), true, true);
      files.push({
        path: relative(root, abs).split(sep).join("/"),
        specifiers: info.importedFiles.map((f) => f.fileName),
      });
    }
  }
  return files;
}
