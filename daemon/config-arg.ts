import { type Config, loadConfig } from "../src/config/index.js";
import { ExecgateError, isExecgateError } from "../src/core/errors.js";
import { configArg, type Parsed, str } from "./args.js";

/**
 * The daemon configuration named by `--config`, else `$EXECGATE_CONFIG`; undefined when neither
 * is given. A named file that cannot be read is config_invalid (exit 2) naming it and where the
 * name came from: the operator pointed at it, so carrying on without it would act on settings
 * they did not choose.
 */
export async function loadConfigArg(
  p: Parsed,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Config | undefined> {
  const path = configArg(p, env);
  if (path === undefined) return undefined;
  const from = str(p, "config") !== undefined ? "--config" : "$EXECGATE_CONFIG";
  try {
    return await loadConfig(path);
  } catch (e) {
    if (!isExecgateError(e, "io_error")) throw e;
    throw new ExecgateError("config_invalid", `${e.message} (from ${from})`, e.detail, { cause: e });
  }
}
