import { asExecgateError, isExecgateError } from "../../src/core/errors.js";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { parseImaList } from "../../src/measure/ima-parse.js";
import { parsePcrValuesFile } from "../../src/measure/pcrs-input.js";
import { accessWarnings } from "../../src/policy/access-warnings.js";
import type { IntegrityEvidence, RuleResult } from "../../src/policy/integrity.js";
import { evaluateIntegrity } from "../../src/policy/integrity.js";
import { loadPolicy } from "../../src/policy/load.js";
import { flag, parseCommandArgs, printJson, readInput, requireStr, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";

/**
 * A dry run judges only the evidence it was given: a rule that fails because its input was not
 * given on the command line is a skip naming the missing flag, not a failure (the daemon, which
 * always has its inputs, still fails closed on them).
 */
export function skipUngiven(
  results: readonly RuleResult[],
  given: { readonly pcrs: boolean; readonly eventlog: boolean; readonly ima: boolean },
): RuleResult[] {
  const needs = (rule: string): string | undefined => {
    const flags: string[] = [];
    if (!given.pcrs && (rule.startsWith("pcrs.") || rule === "eventlog.replay" || rule === "ima.pcr10"))
      flags.push("--pcrs");
    if (!given.eventlog && rule.startsWith("eventlog.")) flags.push("--eventlog");
    if (!given.ima && rule.startsWith("ima.")) flags.push("--ima");
    return flags.length === 0 ? undefined : `no ${flags.join(" or ")} given`;
  };
  return results.map((r) => {
    const missing = r.status === "fail" || r.status === "skip" ? needs(r.rule) : undefined;
    return missing === undefined ? r : { rule: r.rule, status: "skip", detail: missing };
  });
}

export const command: Command = {
  summary:
    "validate the whole policy file as the daemon loads it, then dry-run its integrity rules against recorded evidence",
  usage:
    "--policy F [--pcrs F] [--eventlog F] [--ima F] [--json]\n" +
    "Exit: 0 allow, 1 deny (a rule fails or evidence is malformed), 2 usage or a policy the daemon\n" +
    "  would refuse (naming the key), 3 unreadable policy or evidence file.",
  async run(argv) {
    const p = parseCommandArgs(argv, {
      policy: { type: "string" },
      pcrs: { type: "string" },
      eventlog: { type: "string" },
      ima: { type: "string" },
      json: { type: "boolean" },
    });
    // The daemon's own loader: the whole file (executors, scopes, integrity and the files it
    // names) is validated, so a policy the daemon would refuse is refused here (config_invalid,
    // exit 2, naming the key) before any rule is evaluated.
    const loaded = await loadPolicy(requireStr(p, "policy"));
    const policy = loaded.integrity;
    // Warnings, not failures: the policy is valid, only weaker than it may read.
    const warnings: RuleResult[] = accessWarnings(loaded.policy.access).map((w) => ({
      ...w,
      status: "warn",
    }));
    const pcrsPath = str(p, "pcrs");
    const elPath = str(p, "eventlog");
    const imaPath = str(p, "ima");
    const results: RuleResult[] = [];
    const evidence: { -readonly [K in keyof IntegrityEvidence]: IntegrityEvidence[K] } = { pcrs: {} };
    // Malformed evidence is a result (the rule it feeds fails), not a crash.
    const load = async (what: string, f: () => Promise<void>) => {
      try {
        await f();
      } catch (e) {
        if (!isExecgateError(e) || e.code === "io_error") throw e;
        const err = asExecgateError(e);
        const at = typeof err.detail.offset === "number" ? ` at offset ${err.detail.offset}` : "";
        results.push({
          rule: `evidence.${what}`,
          status: "fail",
          detail: `${err.code}${at}: ${err.message}`,
        });
      }
    };
    if (pcrsPath) {
      await load("pcrs", async () => {
        evidence.pcrs = parsePcrValuesFile(await readInput(pcrsPath, "PCR file"));
      });
    }
    if (elPath) {
      await load("eventlog", async () => {
        evidence.eventlog = parseEventLog(await readInput(elPath, "event log"));
      });
    }
    if (imaPath) {
      await load("ima", async () => {
        evidence.ima = { entries: parseImaList(await readInput(imaPath, "IMA list")).entries };
      });
    }
    const d = evaluateIntegrity(policy, evidence);
    const judged = skipUngiven(d.results, { pcrs: !!pcrsPath, eventlog: !!elPath, ima: !!imaPath });
    const all = [...warnings, ...results, ...judged];
    const failed = judged.find((r) => r.status === "fail");
    const ok = failed === undefined && results.length === 0;
    const skipped = judged.filter((r) => r.status === "skip" && r.detail.startsWith("no --")).length;
    if (flag(p, "json")) {
      printJson({
        ok,
        ...(failed === undefined ? {} : { deny: failed.reason, rule: failed.rule, detail: failed.detail }),
        ...(skipped > 0 ? { skipped } : {}),
        quirks: d.eventlogQuirks,
        results: all,
      });
    } else {
      const lines = all.map((r) => `${r.status.toUpperCase().padEnd(4)}  ${r.rule}: ${r.detail}`);
      const notRun = skipped > 0 ? ` (${skipped} check(s) not run: give the evidence they need)` : "";
      lines.push(
        ok
          ? `result: allow${skipped > 0 ? " as far as checked" : ""}${notRun}`
          : `result: deny (${failed === undefined ? "evidence unreadable" : `${failed.reason}, ${failed.rule}`})${notRun}`,
      );
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return ok ? EXIT.ok : EXIT.failed;
  },
};
