import { describe, expect, it } from "vitest";
import { parseCommandArgs } from "../../daemon/args.js";
import { TPM_OPTIONS, tpmSettings } from "../../daemon/tpm-context.js";
import { parseConfig } from "../../src/config/index.js";

const args = (...a: string[]) => parseCommandArgs(a, TPM_OPTIONS);
const config = (toml: string) => parseConfig(toml, "/etc/execgate", "/etc/execgate/execgate.toml");
const ENV = { TPM2TOOLS_TCTI: "swtpm:path=/env.sock" };

describe("TPM command settings: flag > config [tpm] > $TPM2TOOLS_TCTI > default", () => {
  const file = config('[tpm]\ntcti = "swtpm:path=/file.sock"\nak_handle = "0x81000030"\ntimeout_ms = 2500\n');

  it("a flag wins over the config", () => {
    const s = tpmSettings(
      args("--tcti", "mssim:", "--ak-handle", "0x81000040", "--timeout-ms", "700"),
      file,
      ENV,
    );
    expect(s).toEqual({ tcti: "mssim:", akHandle: 0x81000040, timeoutMs: 700 });
  });

  it("the config's [tpm] wins over $TPM2TOOLS_TCTI and the defaults", () => {
    expect(tpmSettings(args(), file, ENV)).toEqual({
      tcti: "swtpm:path=/file.sock",
      akHandle: 0x81000030,
      timeoutMs: 2500,
    });
  });

  it("a config without tcti means the daemon's default TPM, not $TPM2TOOLS_TCTI", () => {
    expect(tpmSettings(args(), config(""), ENV)).toEqual({
      tcti: "device:/dev/tpmrm0",
      akHandle: 0x81000010,
      timeoutMs: 10_000,
    });
  });

  it("without a config: $TPM2TOOLS_TCTI, else device:/dev/tpmrm0; the default AK handle", () => {
    expect(tpmSettings(args(), undefined, ENV)).toEqual({ tcti: ENV.TPM2TOOLS_TCTI, akHandle: 0x81000010 });
    expect(tpmSettings(args(), undefined, {}).tcti).toBe("device:/dev/tpmrm0");
  });

  it("a bad handle or timeout flag is a usage error", () => {
    expect(() => tpmSettings(args("--ak-handle", "0x01000010"), undefined, {})).toThrow(
      expect.objectContaining({ code: "usage" }),
    );
    expect(() => tpmSettings(args("--timeout-ms", "5"), undefined, {})).toThrow(
      expect.objectContaining({ code: "usage" }),
    );
  });
});
