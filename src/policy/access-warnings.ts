import type { AccessPolicy } from "./access-schema.js";

/** A policy `execgate policy check` loads fine but that is weaker than it reads. */
export interface AccessWarning {
  /** `executors.<name>` */
  readonly rule: string;
  readonly detail: string;
}

/**
 * Executors that tell callers apart by their executable (exe_sha256, exe_paths) but not by
 * their system unit. The executable is read after connect(), and a process of the same uid can
 * connect, fork (the child keeps the socket) and exec the allowed binary, or ptrace a process
 * running it: against its own uid the executable proves nothing. A system unit holds, since an
 * unprivileged user cannot start a process in one (docs/threat-model.md).
 */
export function accessWarnings(policy: AccessPolicy): readonly AccessWarning[] {
  const warnings: AccessWarning[] = [];
  for (const e of policy.executors) {
    if (e.units !== undefined) continue;
    const keys = [
      ...(e.exeSha256 !== undefined ? ["exe_sha256"] : []),
      ...(e.exePaths !== undefined ? ["exe_paths"] : []),
    ];
    if (keys.length === 0) continue;
    warnings.push({
      rule: `executors.${e.name}`,
      detail:
        `${keys.join(" and ")} without units only distinguishes the executable from callers of other uids: ` +
        "any process of a uid this executor admits can pass as it (connect, fork, exec the allowed binary; " +
        "or ptrace it). Add units to bind it to a system service (docs/policy.md)",
    });
  }
  return warnings;
}
