import type { ChaosReport } from "./chaos.js";

/** The figures of a chaos run, one per line, for a terminal. */
export function summary(r: ChaosReport): string {
  const denials = Object.entries(r.denials)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return [
    `chaos: ${r.ok ? "PASS" : "FAIL"}  seed ${r.seed}`,
    `  cycles (kill -9 under load)   ${r.cycles}`,
    `  tokens acknowledged           ${r.tokensAcknowledged}   lost ${r.tokensLost}`,
    `  redeems acknowledged          ${r.redeemsAcknowledged}   lost ${r.redeemsLost}`,
    `  log entries at the end        ${r.entries}   daemon starts ${r.starts} (of ${r.cycles + 1})   torn tails cut ${r.tornTails}`,
    `  restart to serving (ms)       p50 ${r.restartMs.p50.toFixed(0)}   max ${r.restartMs.max.toFixed(0)}`,
    `  denials seen by the clients   ${denials || "none"}`,
    ...(r.verifyEach
      ? [`  audit verify after each start ${r.verifyEach.runs} runs, ${r.verifyEach.failed} failed`]
      : []),
    `  final audit verify            exit ${r.verify.exitCode}${failureCounts(r.verify.failures)}`,
    ...r.verify.failures.slice(0, 3).map((f) => `    ${f}`),
    ...r.unexpected.map((u) => `  UNEXPECTED: ${u}`),
    `  time                          ${r.seconds.toFixed(1)} s`,
  ].join("\n");
}

/** ": N failures (check n, …)" by the check that failed, or "" when none did. */
function failureCounts(failures: readonly string[]): string {
  if (failures.length === 0) return "";
  const by = new Map<string, number>();
  for (const f of failures) {
    const check = f.split(/[ :]/, 1)[0]!;
    by.set(check, (by.get(check) ?? 0) + 1);
  }
  return `: ${failures.length} failures (${[...by].map(([k, n]) => `${k} ${n}`).join(", ")})`;
}
