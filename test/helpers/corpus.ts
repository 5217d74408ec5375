import { join } from "node:path";

/**
 * The public test vectors, copied into the repository so a clone alone runs the suite. Each
 * category's MANIFEST.md (test/corpus/<category>/) gives every file's origin, license and expected result.
 */
export const CORPUS = join(import.meta.dirname, "../corpus");

/** An absolute path in the corpus: `corpusPath("eventlog", "keylime/binary_bios_measurements")`. */
export const corpusPath = (...parts: string[]): string => join(CORPUS, ...parts);
