import type { CborValue } from "../../src/cbor/index.js";
import { cborToJson, type JsonValue } from "../../src/client/index.js";
import { flag, parseCommandArgs, printJson } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT } from "../exit.js";
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

export const command: Command = {
  summary: "daemon health: state, current epoch, evidence age, counters (--json: the status reply)",
  usage: `[--json] [--socket P]\n${SOCKET_HELP}\nExit: 0 the daemon answered, 1 denied, 3 unreachable.`,
  async run(argv) {
    const p = parseCommandArgs(argv, { json: { type: "boolean" }, ...SOCKET_OPTION });
    const client = await connect(p);
    try {
      return await orDenied(async () => {
        const status = await client.status();
        const json = cborToJson(status as ReadonlyMap<string, CborValue>);
        if (flag(p, "json")) printJson(json);
        else {
          const lines = [`execgate daemon at ${client.socketPath}`];
          render(json, "  ", lines);
          process.stdout.write(`${lines.join("\n")}\n`);
        }
        return EXIT.ok;
      });
    } finally {
      await client.close();
    }
  },
};
