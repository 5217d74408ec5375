import { parseCommandArgs, str } from "../args.js";
import type { Command } from "../cli.js";
import { runDaemon } from "../daemon.js";
import { usageError } from "../exit.js";

export const command: Command = {
  summary: "run the daemon in the foreground (systemd Type=notify)",
  usage: "--config FILE   (default: $EXECGATE_CONFIG, else /etc/execgate/execgate.toml)",
  async run(argv) {
    const p = parseCommandArgs(argv, { config: { type: "string" } });
    const config = str(p, "config") ?? process.env.EXECGATE_CONFIG ?? "/etc/execgate/execgate.toml";
    if (config === "") throw usageError("--config is empty");
    return runDaemon(config);
  },
};
