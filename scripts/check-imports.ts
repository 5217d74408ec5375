import { readdir, readFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import ts from "typescript";
import { checkImports, type SourceFile } from "./imports/rules.js";

/**
 * The lint step's layering check (scripts/test.sh): reads every .ts file under src/ and daemon/,
 * lists what each imports with the TypeScript scanner, and exits 1 naming each rule broken
 * (scripts/imports/rules.ts).
 */
async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await tsFiles(p)));
    else if (d.name.endsWith(".ts") && !d.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

async function main(): Promise<number> {
  const root = process.argv[2] ?? process.cwd();
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
  const problems = checkImports(files);
  for (const p of problems) console.error(p);
  if (problems.length > 0) return 1;
  console.log(`imports: ${files.length} files, no cycle between components, dependencies point inward`);
  return 0;
}

process.exitCode = await main();
