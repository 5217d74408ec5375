import { describe, expect, it } from "vitest";
import { renderManPage, roffLine } from "../../scripts/package/man-page.js";

describe("execgate(8) rendering", () => {
  it("escapes what roff would read as syntax: backslashes, dashes, a leading dot or quote", () => {
    expect(roffLine("--dir DIR")).toBe("\\-\\-dir DIR");
    expect(roffLine("C:\\path")).toBe("C:\\epath");
    expect(roffLine(".execgate-dev")).toBe("\\&.execgate\\-dev");
    expect(roffLine("'quoted'")).toBe("\\&'quoted'");
  });

  it("one section per command, its help verbatim (no fill), blank lines kept as spaces", () => {
    const page = renderManPage({
      version: "1.2.3",
      date: "2026-01-02",
      overview: "usage: execgate <command>\n",
      commands: [
        { name: "dev up", help: "usage: execgate dev up [--check]\n\n.hidden line\n" },
        { name: "tpm verify-quote", help: "usage: x\n" },
      ],
    });
    expect(page).toMatch(/^\.TH EXECGATE 8 "2026-01-02" "execgate 1\.2\.3" "System Administration"$/m);
    expect(page).toContain(
      '.SS "execgate dev up"\n.nf\nusage: execgate dev up [\\-\\-check]\n.sp\n\\&.hidden line\n.fi',
    );
    expect(page).toContain('.SS "execgate tpm verify\\-quote"');
    // No line of help text reaches roff as a request.
    const body = page.slice(page.indexOf(".SH COMMANDS"));
    for (const l of body.split("\n"))
      if (l.startsWith(".")) expect(l).toMatch(/^\.(SS|SH|nf|fi|sp|TP|I|BR|IR|B) ?/);
  });
});
