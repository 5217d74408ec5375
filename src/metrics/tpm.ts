import { type TpmCall, type TpmResult, TpmRunner, type TpmRunnerOptions } from "../tpm/runner.js";
import type { LabelledHistogram } from "./histogram.js";

/**
 * A TpmRunner that times every tpm2-tools call into a histogram labelled by tool (tpm2_quote
 * for the epochs, tpm2_sign for checkpoints). The time runs from the call to its answer, so it
 * includes waiting behind the call in flight: a TPM executes one command at a time, and that
 * wait is part of what an epoch experiences. Failed calls are counted too.
 */
export class TimedTpmRunner extends TpmRunner {
  constructor(
    options: TpmRunnerOptions,
    private readonly latency: LabelledHistogram,
    private readonly monoNs: () => bigint = process.hrtime.bigint,
  ) {
    super(options);
  }

  override run(tool: string, argv: readonly string[], call: TpmCall = {}): Promise<TpmResult> {
    const t0 = this.monoNs();
    const done = () => this.latency.observe(tool, Number(this.monoNs() - t0) / 1e9);
    const p = super.run(tool, argv, call);
    p.then(done, done);
    return p;
  }
}
