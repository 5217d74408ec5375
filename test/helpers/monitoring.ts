import { readFileSync } from "node:fs";
import { resolve } from "node:path";

export const ALERTS = resolve("monitoring/prometheus/execgate-alerts.yml");
export const ALERT_TESTS = resolve("monitoring/prometheus/execgate-alerts.test.yml");
export const DASHBOARD = resolve("monitoring/grafana/execgate-dashboard.json");

interface Panel {
  readonly title: string;
  readonly targets?: readonly { readonly expr: string }[];
}

/** Every PromQL expression of the shipped Grafana dashboard, by panel title. */
export function dashboardExprs(): { title: string; expr: string }[] {
  const d = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: Panel[] };
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
}

/** Every `expr:` of the alerting rules (each on one line in the file). */
export function alertExprs(): string[] {
  return [...readFileSync(ALERTS, "utf8").matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1]!.trim());
}

/** The execgate_* series names the dashboard and the alerts read. */
export function monitoredMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const e of [...dashboardExprs().map((d) => d.expr), ...alertExprs()])
    for (const m of e.matchAll(/\bexecgate_[a-z_]+/g)) names.add(m[0]);
  return names;
}
