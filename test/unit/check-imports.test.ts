import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { sourceFiles } from "../../scripts/imports/read.js";
import { checkImports, componentCycles, componentOf, crossEdges } from "../../scripts/imports/rules.js";

// The layering check of the lint step (scripts/check-imports.ts): on small made-up trees, and
// on this repository's own, which keeps every rule.

const f = (path: string, ...specifiers: string[]) => ({ path, specifiers });

describe("the import layering check", () => {
  it("components are folders under src/ (subfolders included) and daemon/ as a whole", () => {
    expect(componentOf("src/tpm/structures/attest.ts")).toBe("src/tpm");
    expect(componentOf("daemon/commands/run.ts")).toBe("daemon");
    expect(componentOf("src/index.ts")).toBeUndefined();
    expect(componentOf("test/unit/x.test.ts")).toBeUndefined();
  });

  it("resolves relative specifiers and ignores packages and imports within a component", () => {
    const edges = crossEdges([
      f("src/attest/epoch.ts", "../hsm/epoch.js", "./binding.js", "node:crypto", "pino"),
      f("daemon/commands/run.ts", "../../src/client/index.js"),
    ]);
    expect(edges).toEqual([
      { from: "src/attest", to: "src/hsm", fromFile: "src/attest/epoch.ts", toFile: "src/hsm/epoch.ts" },
      { from: "daemon", to: "src/client", fromFile: "daemon/commands/run.ts", toFile: "src/client/index.ts" },
    ]);
  });

  it("finds a cycle through three components, and none in a chain", () => {
    const tree = [
      f("src/attest/a.ts", "../hsm/h.js"),
      f("src/hsm/h.ts", "../token/t.js"),
      f("src/token/t.ts", "../attest/a.js"),
      f("src/gate/g.ts", "../attest/a.js"),
    ];
    expect(componentCycles(crossEdges(tree))).toEqual([["src/attest", "src/hsm", "src/token"]]);
    expect(componentCycles(crossEdges(tree.slice(0, 2)))).toEqual([]);
    expect(checkImports(tree)).toEqual([
      "import cycle between src/attest, src/hsm, src/token:",
      "  src/attest → src/hsm: src/attest/a.ts imports src/hsm/h.ts",
      "  src/hsm → src/token: src/hsm/h.ts imports src/token/t.ts",
      "  src/token → src/attest: src/token/t.ts imports src/attest/a.ts",
    ]);
  });

  it("a type-only import closes a cycle too", () => {
    expect(
      checkImports([f("src/policy/d.ts", "../attest/e.js"), f("src/attest/e.ts", "../policy/i.js")]),
    ).toEqual([
      "import cycle between src/attest, src/policy:",
      "  src/attest → src/policy: src/attest/e.ts imports src/policy/i.ts",
      "  src/policy → src/attest: src/policy/d.ts imports src/attest/e.ts",
    ]);
  });

  it("the core never imports the front end, dev tooling or the program", () => {
    expect(
      checkImports([
        f("src/gate/gate.ts", "../server/activation.js", "../wire/request.js"),
        f("src/tpm/x.ts", "../dev/swtpm.js"),
        f("src/lineage/y.ts", "../../daemon/exit.js"),
        f("src/router/handler.ts", "../gate/gate.js", "../server/server.js"),
        f("daemon/daemon.ts", "../src/dev/swtpm.js", "../src/router/handler.js"),
      ]),
    ).toEqual([
      "the core imports the front end: src/gate/gate.ts imports src/server/activation.ts",
      "the core imports dev tooling: src/tpm/x.ts imports src/dev/swtpm.ts",
      "src/ imports the program: src/lineage/y.ts imports daemon/exit.ts",
    ]);
  });

  it("the wire format and the client import only what they may", () => {
    expect(
      checkImports([
        f("src/wire/request.ts", "../cbor/index.js", "../core/errors.js", "../peer/index.js"),
        f("src/client/client.ts", "../wire/frame.js", "../server/frame.js"),
      ]),
    ).toEqual([
      "src/wire may import only src/core, src/cbor: src/wire/request.ts imports src/peer/index.ts",
      "src/client may import only src/wire, src/core, src/cbor: src/client/client.ts imports src/server/frame.ts",
    ]);
  });

  it("this repository's src/ and daemon/ keep every rule", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const files = await sourceFiles(root);
    expect(files.length).toBeGreaterThan(100);
    expect(files.some((f) => f.path === "src/router/handler.ts")).toBe(true);
    expect(checkImports(files)).toEqual([]);
  });
});
