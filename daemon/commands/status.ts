import type { CborValue } from "../../src/cbor/index.js";
import { cborToJson, type JsonValue } from "../../src/client/index.js";
import { asExecgateError } from "../../src/core/errors.js";
import { isLow } from "../../src/lineage/disk-space.js";
import { flag, parseCommandArgs, printJson } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, exitCodeFor } from "../exit.js";
import { connect, orDenied, SOCKET_HELP, SOCKET_OPTION } from "./token-common.js";

/** Nested maps indented, one `key: value` per line, bytes as hex. */
function render(v: JsonValue, indent: string, lines: string[]): void {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return;
  for (const [k, x] of Object.entries(v)) {
    if (x !== null && typeof x === "object" && !Array.isArray(x)) {
      if (Object.keys(x).length === 0) {
        lines.push(`${indent}${k}: (none)`);
        continue;
      }
      lines.push(`${indent}${k}:`);
      render(x, `${indent}  `, lines);
    } else {
      lines.push(`${indent}${k}: ${Array.isArray(x) ? JSON.stringify(x) : String(x)}`);
    }
  }
}

type JsonObject = { [key: string]: JsonValue };

function obj(v: JsonValue | undefined): JsonObject | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
}

function num(v: JsonValue | undefined): number | undefined {
  return typeof v === "number" ? v : undefined;
}

function ago(ms: number): string {
  return ms < 10_000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function counts(o: JsonObject | undefined): string {
  const e = Object.entries(o ?? {}).sort(([, a], [, b]) => (num(b) ?? 0) - (num(a) ?? 0));
  return e.length === 0 ? "(none)" : e.map(([k, v]) => `${k} ${String(v)}`).join(", ");
}

/** The operator's summary: one line per concern, then (generically) any field not summarized. */
function summary(st: JsonObject, lines: string[]): void {
  const done = new Set<string>(["up"]);
  const row = (key: string, label: string, v: string) => {
    done.add(key);
    lines.push(`  ${label}: ${v}`);
  };
  const ep = obj(st.epoch);
  if (ep) {
    const outcome = ep.verified === true ? "verified" : `FAILED: ${String(ep.reason ?? "unknown")}`;
    // Counts of -1: the epoch has no verified quote to take them from (HSM-only, or it failed).
    const counts =
      (num(ep.reset_count) ?? -1) >= 0
        ? ` (TPM reset ${String(ep.reset_count)}, restart ${String(ep.restart_count)})`
        : "";
    // seq counts from 0 in each run; the hardware line counts epochs from 1: say both alike.
    const seq = num(ep.seq);
    const nth = seq === undefined ? String(ep.seq) : `#${String(seq + 1)} of this run (seq ${String(seq)})`;
    row("epoch", "epoch", `${nth}, ${outcome}${counts}`);
  } else if (st.epoch === null) row("epoch", "epoch", "none yet");
  if ("evidence_age_ms" in st) {
    const age = num(st.evidence_age_ms);
    row(
      "evidence_age_ms",
      "evidence",
      age === undefined ? "none verified: every token request is denied" : `${ago(age)} old`,
    );
  }
  const t = obj(st.tokens);
  if (t)
    row(
      "tokens",
      "tokens",
      `${String(t.issued)} issued, ${String(t.redeemed)} redeemed, ${String(t.reports)} reported, ${String(t.live)} live, of ${String(t.requests)} requests`,
    );
  if (obj(st.denials)) row("denials", "denials", counts(obj(st.denials)));
  const last = obj(st.last_denial);
  if (last) {
    done.add("recent_denials");
    row(
      "last_denial",
      "last denial",
      `${String(last.reason)}, ${ago(num(last.age_ms) ?? 0)} ago (recent: ${counts(obj(st.recent_denials))})`,
    );
  } else if (st.last_denial === null) {
    done.add("recent_denials");
    row("last_denial", "last denial", "none");
  }
  const l = obj(st.lineage);
  if (l)
    row(
      "lineage",
      "lineage",
      `${String(l.size)} entries, signed checkpoint at ${String(l.checkpoint_size)} (lag ${String(l.checkpoint_lag)})${diskText(l)}`,
    );
  const pol = obj(st.policy);
  if (pol) {
    const reload = obj(pol.last_reload);
    const since = num(pol.loaded_age_ms);
    const reloadText = reload
      ? reload.ok === true
        ? `last reload ok ${ago(num(reload.age_ms) ?? 0)} ago`
        : `LAST RELOAD REFUSED ${ago(num(reload.age_ms) ?? 0)} ago, old policy kept: ${String(reload.error)}`
      : "not reloaded since start";
    row(
      "policy",
      "policy",
      `${String(pol.digest)}${pol.path === undefined ? "" : ` (${String(pol.path)})`}${since === undefined ? "" : `, in force ${ago(since)}`}; ${reloadText}`,
    );
  }
  const hw = obj(st.hardware);
  if (hw) {
    const health = hw.healthy === true ? "healthy" : "NOT ANSWERING";
    const epochs = num(hw.epochs);
    const rest =
      epochs === undefined
        ? ""
        : `${String(epochs)} epochs this run, ${String(hw.failed_epochs)} failed, the last took ${String(hw.last_epoch_ms)} ms`;
    row("hardware", "hardware", rest ? `${health}; ${rest}` : health);
  }
  const other: JsonObject = {};
  for (const [k, v] of Object.entries(st)) if (!done.has(k)) other[k] = v;
  render(other, "  ", lines);
}

export const command: Command = {
  summary: "daemon health: epoch, evidence age, tokens, denials, lineage, TPM (--json: the status reply)",
  usage: `[--json] [--socket P]\n${SOCKET_HELP}\nExit: 0 the daemon answered, 1 denied, 2 usage, 3 unreachable (--json: {"up": false, "error": …}).`,
  async run(argv) {
    const p = parseCommandArgs(argv, { json: { type: "boolean" }, ...SOCKET_OPTION });
    let client: Awaited<ReturnType<typeof connect>>;
    try {
      client = await connect(p);
    } catch (e) {
      // A monitoring script gets an answer it can parse either way; the exit code still says 3.
      if (!flag(p, "json")) throw e;
      const err = asExecgateError(e);
      printJson({ up: false, error: `${err.code}: ${err.message}` });
      return exitCodeFor(err);
    }
    try {
      return await orDenied(async () => {
        const status = await client.status();
        const json = cborToJson(status as ReadonlyMap<string, CborValue>);
        if (flag(p, "json")) printJson(json);
        else {
          const st = obj(json) ?? {};
          const lines = [`execgate daemon at ${client.socketPath}: ${st.up === false ? "DOWN" : "up"}`];
          summary(st, lines);
          process.stdout.write(`${lines.join("\n")}\n`);
        }
        return EXIT.ok;
      });
    } finally {
      await client.close();
    }
  },
};

/** ", disk 3.1 GiB free of 40.0 GiB" (with "LOW" under the daemon's threshold), or "" when not reported. */
function diskText(l: JsonObject): string {
  const free = num(l.fs_free_bytes);
  const size = num(l.fs_size_bytes);
  if (free === undefined || size === undefined) return "";
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  const low = isLow({ freeBytes: free, sizeBytes: size }) ? " (LOW: a full disk denies every request)" : "";
  return `, disk ${gib(free)} free of ${gib(size)}${low}`;
}
