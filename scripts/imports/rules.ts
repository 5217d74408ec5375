import { posix } from "node:path";

/*
 * The layering rules of docs/architecture.md, checked on import edges between components.
 * A component is a folder under src/ (src/tpm/structures belongs to src/tpm) or daemon/ as a
 * whole. Type-only and dynamic imports count: each is a dependency a reader must follow.
 */

/** The front end: the socket, the router, the client, metrics exposition and the program. */
export const FRONT_END: readonly string[] = [
  "src/server",
  "src/router",
  "src/client",
  "src/metrics",
  "daemon",
];
/** Set-ups for tests, benchmarks and `execgate dev up`: used by the front end, never by the core. */
export const TOOLING: readonly string[] = ["src/dev"];
/**
 * Components that may import only the listed ones: the wire format is shared by server and
 * client, and the client ships to executors without the daemon.
 */
export const ONLY_IMPORTS: Readonly<Record<string, readonly string[]>> = {
  "src/wire": ["src/core", "src/cbor"],
  "src/client": ["src/wire", "src/core", "src/cbor"],
};

export interface SourceFile {
  /** Repository-relative, with forward slashes (src/gate/gate.ts). */
  readonly path: string;
  /** The module specifiers it imports, exports from or loads dynamically. */
  readonly specifiers: readonly string[];
}

export interface ImportEdge {
  readonly from: string;
  readonly to: string;
  readonly fromFile: string;
  readonly toFile: string;
}

/** The component a repository path belongs to, or undefined outside src/ and daemon/. */
export function componentOf(path: string): string | undefined {
  const parts = path.split("/");
  if (parts[0] === "daemon" && parts.length > 1) return "daemon";
  if (parts[0] === "src" && parts.length > 2) return `src/${parts[1]}`;
  return undefined;
}

/** Imports that cross from one component into another (relative specifiers only). */
export function crossEdges(files: readonly SourceFile[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const f of files) {
    const from = componentOf(f.path);
    if (from === undefined) continue;
    for (const s of f.specifiers) {
      if (!s.startsWith(".")) continue;
      const toFile = posix.normalize(posix.join(posix.dirname(f.path), s)).replace(/\.js$/, ".ts");
      const to = componentOf(toFile);
      if (to !== undefined && to !== from) edges.push({ from, to, fromFile: f.path, toFile });
    }
  }
  return edges;
}

/** Strongly connected sets of two or more components (Tarjan), each sorted, in sorted order. */
export function componentCycles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, new Set());
    if (!next.has(e.to)) next.set(e.to, new Set());
    next.get(e.from)!.add(e.to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of [...next.get(v)!].sort()) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    for (;;) {
      const w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
      if (w === v) break;
    }
    if (scc.length > 1) out.push(scc.sort());
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** Every rule broken, one line each (empty when the tree keeps them all). */
export function checkImports(files: readonly SourceFile[]): string[] {
  const edges = crossEdges(files);
  const problems: string[] = [];
  for (const scc of componentCycles(edges)) {
    problems.push(`import cycle between ${scc.join(", ")}:`);
    // One line per component pair inside the cycle, naming its first import.
    const inside = new Set(scc);
    const pairs = new Map<string, { first: ImportEdge; files: Set<string> }>();
    for (const e of edges) {
      if (!inside.has(e.from) || !inside.has(e.to)) continue;
      const key = `${e.from} → ${e.to}`;
      const p = pairs.get(key) ?? { first: e, files: new Set<string>() };
      p.files.add(`${e.fromFile} ${e.toFile}`);
      pairs.set(key, p);
    }
    for (const [key, p] of [...pairs].sort(([a], [b]) => a.localeCompare(b))) {
      const more = p.files.size > 1 ? ` (+${p.files.size - 1} more)` : "";
      problems.push(`  ${key}: ${p.first.fromFile} imports ${p.first.toFile}${more}`);
    }
  }
  const outer = new Set([...FRONT_END, ...TOOLING]);
  for (const e of edges) {
    const only = ONLY_IMPORTS[e.from];
    if (e.from !== "daemon" && e.to === "daemon")
      problems.push(`src/ imports the program: ${e.fromFile} imports ${e.toFile}`);
    else if (only !== undefined && !only.includes(e.to))
      problems.push(`${e.from} may import only ${only.join(", ")}: ${e.fromFile} imports ${e.toFile}`);
    else if (!outer.has(e.from) && FRONT_END.includes(e.to))
      problems.push(`the core imports the front end: ${e.fromFile} imports ${e.toFile}`);
    else if (!outer.has(e.from) && TOOLING.includes(e.to))
      problems.push(`the core imports dev tooling: ${e.fromFile} imports ${e.toFile}`);
  }
  return problems;
}
