import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The repository's units (systemd/). */
export const UNIT_DIR = join(import.meta.dirname, "../../systemd");
export const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

/** The system calls of one `systemd-analyze syscall-filter` group, nested groups expanded. */
async function expandGroup(group: string, seen = new Map<string, Set<string>>()): Promise<Set<string>> {
  const known = seen.get(group);
  if (known) return known;
  const out = new Set<string>();
  seen.set(group, out);
  const { stdout } = await run(SYSTEMD_ANALYZE, ["syscall-filter", "--no-pager", group]);
  for (const raw of stdout.split("\n").slice(1)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("@")) for (const s of await expandGroup(line, seen)) out.add(s);
    else out.add(line);
  }
  return out;
}

async function expand(items: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const i of items) {
    if (i.startsWith("@")) for (const s of await expandGroup(i)) out.add(s);
    else out.add(i);
  }
  return out;
}

/**
 * The unit's SystemCallFilter= lines as systemd applies them: the first allow list sets the
 * allowed set, later allow lines add to it, `~` lines remove from it (systemd.exec(5)).
 */
export async function syscallFilterOfUnit(unitPath: string): Promise<{ allows(name: string): boolean }> {
  const lines = (await readFile(unitPath, "utf8"))
    .split("\n")
    .filter((l) => l.startsWith("SystemCallFilter="))
    .map((l) => l.slice("SystemCallFilter=".length).trim());
  let allowed: Set<string> | undefined;
  for (const l of lines) {
    const deny = l.startsWith("~");
    const items = await expand((deny ? l.slice(1) : l).split(/\s+/).filter(Boolean));
    if (deny) {
      if (!allowed) throw new Error("a deny list before any allow list: not how the unit is written");
      for (const s of items) allowed.delete(s);
    } else {
      allowed ??= new Set();
      for (const s of items) allowed.add(s);
    }
  }
  if (!allowed) throw new Error(`${unitPath} has no SystemCallFilter=`);
  const set = allowed;
  return { allows: (name) => set.has(name) };
}
