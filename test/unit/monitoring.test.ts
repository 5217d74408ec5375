import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ALERT_TESTS,
  ALERTS,
  DASHBOARD,
  dashboardExprs,
  monitoredMetricNames,
} from "../helpers/monitoring.js";

/*
 * The shipped Prometheus alerting rules and Grafana dashboard, checked with Prometheus's own
 * promtool (Debian's prometheus package; scripts/setup.sh installs it). That every series they
 * read is exported by a real daemon is asserted in test/e2e/metrics-scrape.test.ts.
 */
const hasPromtool = spawnSync("promtool", ["--version"]).status === 0;
if (!hasPromtool && process.env.CI === "true")
  throw new Error("promtool is missing (apt-get install prometheus)");

function promtool(args: string[], cwd?: string): { status: number | null; out: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8", ...(cwd ? { cwd } : {}) });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.runIf(hasPromtool)("monitoring: alerting rules and dashboard", () => {
  it("promtool check rules accepts the alerting rules", () => {
    const r = promtool(["check", "rules", ALERTS]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("promtool test rules: each alert fires on what should raise it, and only then", () => {
    const r = promtool(["test", "rules", ALERT_TESTS], dirname(ALERT_TESTS));
    expect(r.status, r.out).toBe(0);
    // Every alert of the file is exercised by a test case.
    const alerts = [...readFileSync(ALERTS, "utf8").matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    const tested = readFileSync(ALERT_TESTS, "utf8");
    for (const a of alerts) expect(tested, a).toContain(`alertname: ${a}`);
  });

  it("every dashboard query is valid PromQL (promtool parses it as a recording rule)", () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(10);
    const rules = exprs
      .map(
        (e, i) =>
          `      - record: dashboard:q${i}\n        expr: ${JSON.stringify(e.expr.replaceAll("$instance", ".*"))}`,
      )
      .join("\n");
    const file = join(mkdtempSync(join(tmpdir(), "execgate-dash-")), "dashboard.rules.yml");
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
    const r = promtool(["check", "rules", file]);
    expect(r.status, r.out).toBe(0);
  });

  it("the dashboard is importable Grafana JSON: a datasource input, a host variable, every panel placed and queried", () => {
    const d = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      uid: string;
      templating: { list: { name: string }[] };
      panels: { title: string; gridPos: object; targets: object[]; datasource: { uid: string } }[];
    };
    expect(d.uid).toBe("execgate");
    expect(d.templating.list.map((v) => v.name)).toEqual(["datasource", "instance"]);
    for (const p of d.panels) {
      expect(p.gridPos, p.title).toBeDefined();
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      expect(p.datasource.uid, p.title).toBe(["$", "{datasource}"].join(""));
    }
    expect(monitoredMetricNames().size).toBeGreaterThan(15);
  });
});
