import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { exitCodeFor } from "../../daemon/exit.js";
import {
  configDigest,
  DEFAULTS,
  loadConfig,
  parseConfig,
  resolvedDocument,
  SCHEMA,
} from "../../src/config/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { DEFAULT_PCR_SELECTION } from "../../src/tpm/ops/pcr.js";

const BASE = "/etc/execgate";
const EXAMPLE = join(import.meta.dirname, "../../examples/execgate.toml");

function invalid(text: string, key: string, why: RegExp): void {
  let err: unknown;
  try {
    parseConfig(text, BASE, "/etc/execgate/execgate.toml");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ExecgateError);
  const e = err as ExecgateError;
  expect(e.code).toBe("config_invalid");
  expect(e.detail.key).toBe(key);
  expect(e.message).toContain("/etc/execgate/execgate.toml");
  expect(e.message).toContain(key);
  expect(e.message).toMatch(why);
  expect(exitCodeFor(e)).toBe(2);
}

describe("config: defaults", () => {
  it("an empty file is the documented defaults", () => {
    const c = parseConfig("", BASE);
    expect(c.daemon).toEqual({
      socket: "/run/execgate/execgate.sock",
      socketMode: 0o660,
      stateDir: "/var/lib/execgate",
      policy: "/etc/execgate/policy.toml",
      logLevel: "info",
      bootIdPath: "/proc/sys/kernel/random/boot_id",
    });
    expect(c.tpm).toEqual({
      tcti: "device:/dev/tpmrm0",
      akHandle: 0x81000010,
      signingKeyHandle: 0x81000020,
      pcrs: DEFAULT_PCR_SELECTION,
      timeoutMs: 10_000,
    });
    expect(c.attest).toEqual({ epochMs: 1000, idleEpochMs: 10_000, maxEvidenceAgeMs: 5000 });
    expect(c.lineage).toEqual({
      dir: "/var/lib/execgate/lineage",
      checkpointMs: 1000,
      segmentBytes: 64 * 1024 * 1024,
    });
    expect(c.token).toEqual({ audience: "execgate", issuer: "execgate", skewS: 0 });
    expect(c.limits).toEqual({
      maxFrameBytes: 65_536,
      maxConnections: 256,
      maxConnectionsPerUid: 64,
      readTimeoutMs: 5000,
      idleTimeoutMs: 60_000,
      requestsPerSecondPerUid: 1000,
      burstPerUid: 2000,
      denialWindowMs: 10_000,
    });
  });

  it("resolvedDocument of the defaults spells DEFAULTS (lineage.dir derived)", () => {
    const doc = resolvedDocument(parseConfig("", BASE));
    for (const [section, keys] of Object.entries(DEFAULTS)) {
      for (const [k, v] of Object.entries(keys)) {
        const got = (doc as Record<string, Record<string, unknown>>)[section]![k];
        if (section === "lineage" && k === "dir") expect(got).toBe("/var/lib/execgate/lineage");
        else expect(got).toBe(v);
      }
    }
  });

  it("every DEFAULTS key has a schema entry and the reverse", () => {
    for (const s of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
      expect(Object.keys(SCHEMA[s]).sort()).toEqual(Object.keys(DEFAULTS[s]).sort());
    }
  });

  it("the defaults pass their own range checks (spelled out in the file)", () => {
    const lines: string[] = [];
    for (const [section, keys] of Object.entries(DEFAULTS)) {
      lines.push(`[${section}]`);
      for (const [k, v] of Object.entries(keys))
        if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
    }
    const spelled = parseConfig(lines.join("\n"), BASE);
    expect(spelled).toEqual(parseConfig("", BASE));
    expect(configDigest(spelled)).toEqual(configDigest(parseConfig("", BASE)));
  });
});

describe("config: values", () => {
  it("resolves relative paths against the config file's directory", () => {
    const c = parseConfig(
      `
[daemon]
socket = "run/x.sock"
state_dir = "../state"
policy = "policy.toml"
[tpm]
ek_ca_bundle = "ca/ek.pem"
[attest]
eventlog = "/sys/kernel/security/tpm0/binary_bios_measurements"
ima = "./ima.bin"
[lineage]
dir = "lin"
`,
      "/srv/eg/conf",
    );
    expect(c.daemon.socket).toBe("/srv/eg/conf/run/x.sock");
    expect(c.daemon.stateDir).toBe("/srv/eg/state");
    expect(c.daemon.policy).toBe("/srv/eg/conf/policy.toml");
    expect(c.tpm.ekCaBundle).toBe("/srv/eg/conf/ca/ek.pem");
    expect(c.attest.eventlog).toBe("/sys/kernel/security/tpm0/binary_bios_measurements");
    expect(c.attest.ima).toBe("/srv/eg/conf/ima.bin");
    expect(c.lineage.dir).toBe("/srv/eg/conf/lin");
  });

  it("lineage.dir follows a changed state_dir", () => {
    expect(parseConfig('[daemon]\nstate_dir = "/data/eg"', BASE).lineage.dir).toBe("/data/eg/lineage");
  });

  it("canonicalizes modes, handles and PCR selections", () => {
    const c = parseConfig(
      `[daemon]
socket_mode = "600"
socket_group = "1001"
[tpm]
ak_handle = "0x81000011"
signing_key_handle = "2164260898"
pcrs = "sha1:7+sha256:0,10"
tcti = "swtpm:host=localhost,port=2321"`,
      BASE,
    );
    expect(c.daemon.socketMode).toBe(0o600);
    expect(c.daemon.socketGroup).toBe("1001");
    expect(c.tpm.akHandle).toBe(0x81000011);
    expect(c.tpm.signingKeyHandle).toBe(0x81000022);
    expect(c.tpm.pcrs.length).toBe(2);
    const doc = resolvedDocument(c);
    expect(doc.daemon.socket_mode).toBe("0600");
    expect(doc.tpm.signing_key_handle).toBe("0x81000022");
    expect(doc.tpm.pcrs).toBe("sha1:7+sha256:0,10");
  });

  it("the commented example parses", async () => {
    const c = await loadConfig(EXAMPLE);
    expect(c.daemon.socketGroup).toBe("execgate-clients");
    expect(c.attest.ima).toBe("/sys/kernel/security/ima/binary_runtime_measurements");
  });
});

describe("config: closed schema, named errors", () => {
  const cases: [string, string, string, RegExp][] = [
    ["unknown section", "[deamon]\nsocket = 1", "deamon", /unknown key/],
    ["unknown key", '[daemon]\nsockett = "/x"', "daemon.sockett", /unknown key/],
    ["unknown nested table", "[tpm.extra]\na = 1", "tpm.extra", /unknown key/],
    ["top-level scalar", "epoch_ms = 5", "epoch_ms", /unknown key/],
    ["section not a table", "daemon = 5", "daemon", /must be a table, got an integer/],
    [
      "string for integer",
      '[attest]\nepoch_ms = "1000"',
      "attest.epoch_ms",
      /must be an integer, got a string/,
    ],
    [
      "float for integer",
      "[attest]\nepoch_ms = 1000.5",
      "attest.epoch_ms",
      /must be an integer, got a float/,
    ],
    ["integer for path", "[daemon]\npolicy = 3", "daemon.policy", /must be a path string, got an integer/],
    ["array for string", "[token]\naudience = []", "token.audience", /got an array/],
    ["date for integer", "[token]\nskew_s = 1979-05-27", "token.skew_s", /got a date/],
    ["bool for mode", "[daemon]\nsocket_mode = true", "daemon.socket_mode", /got a boolean/],
    ["epoch below range", "[attest]\nepoch_ms = 49", "attest.epoch_ms", /outside 50\.\.600000/],
    ["epoch above range", "[attest]\nepoch_ms = 600001", "attest.epoch_ms", /outside/],
    ["negative skew", "[token]\nskew_s = -1", "token.skew_s", /outside 0\.\.300/],
    [
      "denial window below range",
      "[limits]\ndenial_window_ms = 99",
      "limits.denial_window_ms",
      /outside 100\.\.3600000/,
    ],
    [
      "max age below epoch",
      "[attest]\nepoch_ms = 2000\nmax_evidence_age_ms = 1999",
      "attest.max_evidence_age_ms",
      /at least attest.epoch_ms/,
    ],
    [
      "idle below epoch",
      "[attest]\nepoch_ms = 20000\nmax_evidence_age_ms = 20000",
      "attest.idle_epoch_ms",
      /at least attest.epoch_ms/,
    ],
    [
      "idle timeout below read",
      "[limits]\nread_timeout_ms = 9000\nidle_timeout_ms = 8000",
      "limits.idle_timeout_ms",
      /at least limits.read_timeout_ms/,
    ],
    ["decimal mode", '[daemon]\nsocket_mode = "0680"', "daemon.socket_mode", /octal/],
    ["mode as integer", "[daemon]\nsocket_mode = 660", "daemon.socket_mode", /octal string/],
    ["setuid bits", '[daemon]\nsocket_mode = "4660"', "daemon.socket_mode", /permission bits/],
    ["bad log level", '[daemon]\nlog_level = "verbose"', "daemon.log_level", /one of fatal, error/],
    ["bad group", '[daemon]\nsocket_group = "a b"', "daemon.socket_group", /group name or a numeric gid/],
    ["empty path", '[daemon]\nstate_dir = ""', "daemon.state_dir", /non-empty path/],
    ["long socket path", `[daemon]\nsocket = "/${"s".repeat(107)}"`, "daemon.socket", /more than 107/],
    ["transient handle", '[tpm]\nak_handle = "0x80000001"', "tpm.ak_handle", /not a TPM persistent handle/],
    ["same handles", '[tpm]\nsigning_key_handle = "0x81000010"', "tpm.signing_key_handle", /must differ/],
    ["bad pcrs", '[tpm]\npcrs = "sha256:0,0"', "tpm.pcrs", /duplicate PCR/],
    ["unknown bank", '[tpm]\npcrs = "md5:0"', "tpm.pcrs", /not supported/],
    ["bad tcti", '[tpm]\ntcti = "Device /dev/tpm0"', "tpm.tcti", /TCTI/],
    ["empty audience", '[token]\naudience = ""', "token.audience", /1\.\.256 characters/],
    ["audience with space", '[token]\naudience = "a b"', "token.audience", /printable ASCII/],
    ["segment too small", "[lineage]\nsegment_bytes = 1024", "lineage.segment_bytes", /outside/],
    ["zero connections", "[limits]\nmax_connections = 0", "limits.max_connections", /outside 1\.\./],
  ];
  it.each(cases)("%s", (_name, text, key, why) => invalid(text, key, why));

  it("invalid TOML is config_invalid with the position", () => {
    expect(() => parseConfig("[daemon\n", BASE, "f.toml")).toThrow(/f\.toml: not valid TOML \(line 1/);
    expect(() => parseConfig("a = = 1", BASE)).toThrow(expect.objectContaining({ code: "config_invalid" }));
  });

  it("loadConfig: missing file is io_error (exit 3), bad content names the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "execgate-config-"));
    await expect(loadConfig(join(dir, "nope.toml"))).rejects.toMatchObject({ code: "io_error" });
    const f = join(dir, "bad.toml");
    await writeFile(f, "[limits]\nburst_per_uid = 0\n");
    await expect(loadConfig(f)).rejects.toMatchObject({
      code: "config_invalid",
      detail: { file: f, key: "limits.burst_per_uid" },
    });
    await writeFile(f, Buffer.from([0x5b, 0xff, 0x5d]));
    await expect(loadConfig(f)).rejects.toMatchObject({ code: "config_invalid", message: `${f}: not UTF-8` });
  });
});

describe("config: digest", () => {
  it("ignores comments, order and spelled-out defaults; changes with any value", () => {
    const a = parseConfig("[attest]\nepoch_ms = 500\n[token]\naudience = 'x'", BASE);
    const b = parseConfig(
      '# hi\n[token]\naudience = "x"\n[attest]\nidle_epoch_ms = 10000\nepoch_ms = 500',
      BASE,
    );
    expect(configDigest(a)).toEqual(configDigest(b));
    expect(configDigest(a)).toHaveLength(32);
    const c = parseConfig("[attest]\nepoch_ms = 501\n[token]\naudience = 'x'", BASE);
    expect(configDigest(c)).not.toEqual(configDigest(a));
    const d = parseConfig("[attest]\nepoch_ms = 500\n[token]\naudience = 'x'", "/other");
    expect(configDigest(d)).toEqual(configDigest(a)); // all default paths are absolute
    const e = parseConfig("[attest]\nepoch_ms = 500\nima = 'ima'\n[token]\naudience = 'x'", BASE);
    const f = parseConfig("[attest]\nepoch_ms = 500\nima = 'ima'\n[token]\naudience = 'x'", "/other");
    expect(configDigest(e)).not.toEqual(configDigest(f)); // resolved paths differ
  });
});
