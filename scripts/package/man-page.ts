/**
 * execgate(8) as roff, from the CLI's own help texts: pure (the texts and the date are passed
 * in), so the page says exactly what `--help` says. Roff syntax per groff_man(7).
 */

export interface ManCommand {
  /** The words after `execgate`, as in daemon/command-table.ts. */
  readonly name: string;
  /** `execgate NAME --help`, verbatim. */
  readonly help: string;
}

export interface ManPageInput {
  readonly version: string;
  /** YYYY-MM-DD, from the build's SOURCE_DATE_EPOCH (the last commit), not the clock. */
  readonly date: string;
  /** `execgate --help`, verbatim. */
  readonly overview: string;
  readonly commands: readonly ManCommand[];
}

/** One line of text for roff: backslashes and dashes escaped, no line read as a request. */
export function roffLine(text: string): string {
  const escaped = text.replaceAll("\\", "\\e").replaceAll("-", "\\-");
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

/** Text shown as written (no filling, no adjusting): help texts are laid out by hand. */
function verbatim(text: string): string[] {
  const lines = text.replace(/\n+$/, "").split("\n");
  return [".nf", ...lines.map((l) => (l === "" ? ".sp" : roffLine(l))), ".fi"];
}

function quoted(arg: string): string {
  return `"${arg.replaceAll('"', '""')}"`;
}

export function renderManPage(input: ManPageInput): string {
  const lines = [
    `.TH EXECGATE 8 ${quoted(input.date)} ${quoted(`execgate ${input.version}`)} "System Administration"`,
    ".SH NAME",
    "execgate \\- hardware\\-rooted attestation daemon and its command\\-line tools",
    ".SH SYNOPSIS",
    ".B execgate",
    ".I command",
    "[\\fIoptions\\fR]",
    ".br",
    ".B execgate \\-\\-version",
    ".SH DESCRIPTION",
    "execgate releases an execution token to a local executor only when the TPM 2.0 (or a",
    "PKCS#11 HSM) has proven that the host's measured state matches the policy; every request,",
    "decision and execution is recorded in an append\\-only Merkle lineage log that auditors",
    "verify offline with",
    '.BR "execgate audit verify" .',
    "The daemon runs as the systemd service",
    ".BR execgate.service ,",
    "activated by",
    ".BR execgate.socket .",
    ".PP",
    ...verbatim(input.overview),
    ".SH COMMANDS",
  ];
  for (const c of input.commands) {
    lines.push(`.SS ${quoted(roffLine(`execgate ${c.name}`))}`, ...verbatim(c.help));
  }
  lines.push(
    ".SH FILES",
    ".TP",
    ".I /etc/execgate/execgate.toml",
    "The daemon's configuration.",
    ".TP",
    ".I /etc/execgate/policy.toml",
    "The policy: approved PCR values, executors and actions.",
    ".TP",
    ".I /etc/execgate/credentials/hsm\\-pin",
    "The HSM PIN, passed to the service as a systemd credential (empty: no HSM).",
    ".TP",
    ".I /var/lib/execgate",
    "The lineage log and its blobs: the audit record.",
    ".TP",
    ".I /run/execgate/execgate.sock",
    "The executors' socket (group execgate\\-clients).",
    ".SH SEE ALSO",
    ".BR systemctl (1),",
    ".BR tpm2 (1),",
    "and the documentation in",
    ".IR /usr/share/doc/execgate .",
  );
  return `${lines.join("\n")}\n`;
}
