import { ExecgateError } from "../../core/errors.js";
import type { TpmRunner } from "../runner.js";

/** TPM2_GetRandom via tpm2_getrandom; the TPM may return fewer bytes than asked, which we reject. */
export async function getRandom(runner: TpmRunner, n: number): Promise<Uint8Array> {
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new ExecgateError("usage", "random byte count must be 1..64");
  const { files } = await runner.run("tpm2_getrandom", [String(n), "-o", "r.bin"], { outputs: ["r.bin"] });
  const out = files["r.bin"]!;
  if (out.length !== n)
    throw new ExecgateError("hardware_error", `tpm2_getrandom returned ${out.length} of ${n} bytes`);
  return out;
}
