import { asExecgateError, isExecgateError } from "../../src/core/errors.js";
import { toHex } from "../../src/core/hex.js";
import { buildAllowlist, checkAllowlist } from "../../src/measure/ima-allowlist.js";
import { type ImaList, parseImaList } from "../../src/measure/ima-parse.js";
import { replayIma } from "../../src/measure/ima-replay.js";
import { flag, parseCommandArgs, printJson, readInput, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";

export const command: Command = {
  summary: "parse + replay an IMA list; print the PCR 10 aggregate",
  usage:
    "FILE [--json] [--allowlist F] [--keylime-policy F] [--exclude GLOB]…\n" +
    "Exit: 0 parsed and no allowlist violation (invalidated entries alone do not fail), 1 malformed\n" +
    "  list or a violation, 2 usage or a malformed allowlist / Keylime policy, 3 unreadable file.",
  async run(argv) {
    const p = parseCommandArgs(
      argv,
      {
        json: { type: "boolean" },
        allowlist: { type: "string" },
        "keylime-policy": { type: "string" },
        exclude: { type: "string", multiple: true },
      },
      true,
    );
    const file = p.positionals[0];
    if (file === undefined || p.positionals.length !== 1) throw usageError("expected one IMA list FILE");
    const json = flag(p, "json");
    const bytes = await readInput(file, "IMA list");
    const alPath = str(p, "allowlist");
    const klPath = str(p, "keylime-policy");
    const dec = new TextDecoder();
    const allowlist =
      alPath === undefined && klPath === undefined
        ? undefined
        : buildAllowlist({
            texts: alPath === undefined ? [] : [dec.decode(await readInput(alPath, "allowlist"))],
            keylimePolicies:
              klPath === undefined ? [] : [dec.decode(await readInput(klPath, "Keylime policy"))],
            excludeGlobs: (p.values.exclude as string[] | undefined) ?? [],
          });
    let list: ImaList;
    try {
      list = parseImaList(bytes);
    } catch (e) {
      if (!isExecgateError(e)) throw e;
      const err = asExecgateError(e);
      const offset = typeof err.detail.offset === "number" ? err.detail.offset : 0;
      if (json) printJson({ error: { code: err.code, offset, reason: err.message } });
      process.stderr.write(
        `execgate measure ima: ${file}: ${err.code} at offset ${offset}: ${err.message}\n`,
      );
      return EXIT.failed;
    }
    const templates = [...new Set(list.entries.map((e) => e.template))];
    const first = list.entries[0]!;
    const violations = allowlist ? checkAllowlist(list.entries, allowlist) : [];
    const out = {
      format: list.format,
      entries: list.entries.length,
      template: templates.length === 1 ? templates[0] : templates,
      pcrs: replayIma(list.entries),
      bootAggregate: first.name === "boot_aggregate" ? toHex(first.fileDigest) : null,
      bootAggregateAlg: first.name === "boot_aggregate" ? first.digestAlg : null,
      invalidated: list.entries.filter((e) => e.violation).length,
      trailingBytes: list.trailingBytes,
      violations,
    };
    if (json) printJson(out);
    else {
      const lines = [
        `format: ${out.format}`,
        `entries: ${out.entries}`,
        `template: ${templates.join(", ")}`,
        `sha1 PCR 10: ${out.pcrs.sha1?.["10"]}`,
        `sha256 PCR 10: ${out.pcrs.sha256?.["10"]}`,
        `boot_aggregate: ${out.bootAggregateAlg}:${out.bootAggregate}`,
      ];
      for (const v of violations) lines.push(`violation: ${v.kind} ${v.path} ${v.digest}`);
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return violations.some((v) => v.kind !== "invalidated") ? EXIT.failed : EXIT.ok;
  },
};
