import { configArg, parseCommandArgs } from "../args.js";
import type { Command } from "../cli.js";
import { runDaemon } from "../daemon.js";

export const command: Command = {
  summary: "run the daemon in the foreground (systemd Type=notify)",
  usage: "--config FILE   (default: $EXECGATE_CONFIG, else /etc/execgate/execgate.toml)",
  async run(argv) {
    const p = parseCommandArgs(argv, { config: { type: "string" } });
    return runDaemon(configArg(p) ?? "/etc/execgate/execgate.toml");
  },
};
