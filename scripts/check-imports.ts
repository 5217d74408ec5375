import { sourceFiles } from "./imports/read.js";
import { checkImports } from "./imports/rules.js";

/**
 * The lint step's layering check (scripts/test.sh): exits 1 naming each rule of
 * scripts/imports/rules.ts that an import under src/ or daemon/ breaks.
 * Usage: node dist/scripts/check-imports.js [repository root, default the working directory]
 */
const files = await sourceFiles(process.argv[2] ?? process.cwd());
const problems = checkImports(files);
for (const p of problems) console.error(p);
if (problems.length > 0) process.exitCode = 1;
else console.log(`imports: ${files.length} files, no cycle between components, dependencies point inward`);
