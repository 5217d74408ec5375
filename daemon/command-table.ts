import type { Command } from "./cli.js";

type Loader = () => Promise<Command>;

/**
 * Every command, loaded lazily so `execgate measure …` never loads the TPM layer and the
 * auditor never loads hardware code. Keys are the words typed after `execgate`.
 */
export const COMMANDS: Record<string, Loader> = {
  "tpm info": async () => (await import("./commands/tpm-info.js")).command,
  "tpm quote": async () => (await import("./commands/tpm-quote.js")).command,
  "tpm verify-quote": async () => (await import("./commands/tpm-verify-quote.js")).command,
  daemon: async () => (await import("./commands/daemon.js")).command,
  enroll: async () => (await import("./commands/enroll.js")).command,
  "dev up": async () => (await import("./commands/dev-up.js")).command,
  "measure eventlog": async () => (await import("./commands/measure-eventlog.js")).command,
  "measure ima": async () => (await import("./commands/measure-ima.js")).command,
  "policy check": async () => (await import("./commands/policy-check.js")).command,
  "action-digest": async () => (await import("./commands/action-digest.js")).command,
  run: async () => (await import("./commands/run.js")).command,
  "token request": async () => (await import("./commands/token-request.js")).command,
  "token redeem": async () => (await import("./commands/token-redeem.js")).command,
  "token verify": async () => (await import("./commands/token-verify.js")).command,
  evidence: async () => (await import("./commands/evidence.js")).command,
  status: async () => (await import("./commands/status.js")).command,
  "audit export": async () => (await import("./commands/audit-export.js")).command,
  "audit inclusion": async () => (await import("./commands/audit-proof.js")).inclusion,
  "audit consistency": async () => (await import("./commands/audit-proof.js")).consistency,
  "audit verify": async () => (await import("./commands/audit-verify.js")).command,
  "audit show": async () => (await import("./commands/audit-show.js")).command,
  "audit query": async () => (await import("./commands/audit-query.js")).command,
  "audit report": async () => (await import("./commands/audit-report.js")).command,
};
