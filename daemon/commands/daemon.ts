import { configArg, parseCommandArgs } from "../args.js";
import type { Command } from "../cli.js";
import { runDaemon } from "../daemon.js";

export const command: Command = {
  summary: "run the daemon in the foreground (systemd Type=notify)",
  usage:
    "--config FILE   (default: $EXECGATE_CONFIG, else /etc/execgate/execgate.toml)\n" +
    "Exit: 0 stopped cleanly (SIGTERM/SIGINT), 2 usage, or refused to start: configuration or policy\n" +
    "  invalid; 3 refused to start (config unreadable, TPM/HSM, lineage or socket unavailable) or a\n" +
    "  stop step failed.",
  async run(argv) {
    const p = parseCommandArgs(argv, { config: { type: "string" } });
    return runDaemon(configArg(p) ?? "/etc/execgate/execgate.toml");
  },
};
