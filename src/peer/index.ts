export type { ExeDigest, ExeFile } from "./exe-digest.js";
export { ExeDigestCache } from "./exe-digest.js";
export type { IdentifyOptions, ImaExeDigest, ImaExeDigestHook, PeerIdentity } from "./identify.js";
export { identifyPeer, identifyPeerFd, peerUid } from "./identify.js";
export type { CgroupUnits, ProcStat } from "./proc-parse.js";
export { parseCgroup, parsePidfdInfoPid, parseProcStat, unitsFromCgroupPath } from "./proc-parse.js";
export type { ProcSource } from "./procfs.js";
export { procfs } from "./procfs.js";
