import { asExecgateError, isExecgateError } from "../../src/core/errors.js";
import { eventLogFacts } from "../../src/measure/eventlog-decode.js";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { compareWithQuote, replayEventLog, replayToPcrValues } from "../../src/measure/eventlog-replay.js";
import { parsePcrValuesFile } from "../../src/measure/pcrs-input.js";
import { flag, parseCommandArgs, printJson, readInput, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";

export const command: Command = {
  summary: "parse + replay a TCG event log; print PCR values per bank",
  usage:
    "FILE [--json] [--pcrs PCRS_FILE]\n" +
    "Exit: 0 parsed (with --pcrs: the replay matches it), 1 malformed log or PCR file, or the replay\n" +
    "  does not match --pcrs; 2 usage; 3 unreadable file.",
  async run(argv) {
    const p = parseCommandArgs(argv, { json: { type: "boolean" }, pcrs: { type: "string" } }, true);
    const file = p.positionals[0];
    if (file === undefined || p.positionals.length !== 1) throw usageError("expected one event log FILE");
    const json = flag(p, "json");
    const bytes = await readInput(file, "event log");
    const pcrsPath = str(p, "pcrs");
    const quoted =
      pcrsPath === undefined ? undefined : parsePcrValuesFile(await readInput(pcrsPath, "PCR file"));
    let log: ReturnType<typeof parseEventLog>;
    try {
      log = parseEventLog(bytes);
    } catch (e) {
      if (!isExecgateError(e)) throw e;
      const err = asExecgateError(e);
      const offset = typeof err.detail.offset === "number" ? err.detail.offset : 0;
      if (json) printJson({ error: { code: err.code, offset, reason: err.message } });
      process.stderr.write(
        `execgate measure eventlog: ${file}: ${err.code} at offset ${offset}: ${err.message}\n`,
      );
      return EXIT.failed;
    }
    const cmp = quoted ? compareWithQuote(log, quoted) : undefined;
    const replay = cmp ? cmp.replay : replayEventLog(log);
    const facts = eventLogFacts(log);
    const out = {
      format: log.format,
      events: log.events.length,
      pcrs: replayToPcrValues(replay),
      secureBoot: facts.secureBoot,
      scrtmVersion: facts.scrtmVersion,
      quirks: cmp ? cmp.quirks : [],
      incompleteBanks: replay.incompleteBanks,
      startupLocality: log.startupLocality ?? null,
      hcrtm: log.hcrtm,
      sp800155Events: log.sp800155Events,
      bootApplications: facts.bootApplications.map((a) => ({ pcr: a.pcrIndex, digests: a.digests })),
      dbxSha256: facts.dbxSha256.length,
      digestMismatches: facts.digestMismatches,
      ...(cmp ? { quote: { ok: cmp.ok, banksCompared: cmp.banksCompared, mismatches: cmp.mismatches } } : {}),
    };
    if (json) printJson(out);
    else {
      const lines = [
        `format: ${out.format}`,
        `events: ${out.events}`,
        `secureBoot: ${String(out.secureBoot)}`,
      ];
      for (const [bank, pcrs] of Object.entries(out.pcrs)) {
        lines.push(`${bank}:`);
        for (const [i, v] of Object.entries(pcrs)) lines.push(`  ${i.padStart(2)}: ${v}`);
      }
      if (out.incompleteBanks.length) lines.push(`incomplete banks: ${out.incompleteBanks.join(", ")}`);
      for (const m of out.digestMismatches)
        lines.push(`event ${m.seq} (${m.type}, PCR ${m.pcr}): digest ≠ data`);
      if (cmp) {
        lines.push(
          `quote: ${cmp.ok ? "matches" : "DOES NOT match"}${cmp.quirks.length ? ` (quirks: ${cmp.quirks})` : ""}`,
        );
        for (const m of cmp.mismatches)
          lines.push(`  ${m.bank}:${m.pcr} quoted ${m.quoted} replayed ${m.replayed}`);
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return cmp && !cmp.ok ? EXIT.failed : EXIT.ok;
  },
};
