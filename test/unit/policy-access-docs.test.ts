import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXECUTOR_KEYS, MAX_TTL_S, MIN_TTL_S, SCOPE_KEYS } from "../../src/policy/access-schema.js";
import { JUDGED_UNDER_OTHER_POLICY, WAITING_FOR_FRESH_EPOCH } from "../../src/policy/decide.js";
import { POLICY_DOMAIN, POLICY_RECORD_KEYS } from "../../src/policy/record.js";

const doc = readFileSync(join(import.meta.dirname, "../../docs/policy.md"), "utf8");
const rows = (heading: string) => {
  const start = doc.indexOf(heading);
  const end = doc.indexOf("\n## ", start + 1);
  return doc.slice(start, end === -1 ? undefined : end);
};

describe("docs/policy.md", () => {
  it("documents every executor and scope key in its table", () => {
    for (const k of EXECUTOR_KEYS) expect(rows("## Executors"), k).toContain(`| \`${k}\` |`);
    for (const k of SCOPE_KEYS) expect(rows("## Scopes"), k).toContain(`| \`${k}\` |`);
    expect(rows("## Scopes")).toContain(`integer ${MIN_TTL_S}..${MAX_TTL_S}`);
  });

  it("lists the decision's reasons in decide()'s order", () => {
    const table = rows("## The decision");
    const order = [
      "attestation_missing",
      JUDGED_UNDER_OTHER_POLICY,
      "quote_invalid",
      "environment_mismatch",
      "max_evidence_age_ms",
      "peer_unknown",
      "scope_not_allowed",
      "policy_mismatch",
      WAITING_FOR_FRESH_EPOCH,
    ];
    const at = order.map((r) => table.indexOf(r));
    for (const [i, p] of at.entries()) expect(p, order[i]).toBeGreaterThan(-1);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it("documents the policy record the policy digest is taken over", () => {
    const section = rows("## The policy digest");
    expect(section).toContain(`"domain": "${POLICY_DOMAIN}"`);
    for (const k of POLICY_RECORD_KEYS.filter((k) => k !== "domain"))
      expect(section).toContain(`"${k}": digest`);
  });
});
