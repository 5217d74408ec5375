/** execgate/client: the executor's API to the daemon's Unix socket (docs/protocol.md). */

export { type ErrorCode, ExecgateError } from "../core/errors.js";
export {
  type ConnectOptions,
  DEFAULT_SOCKET_PATH,
  DEFAULT_TIMEOUT_MS,
  defaultSocketPath,
  ExecgateClient,
  type ExecutionReport,
  type TokenRequest,
} from "./client.js";
export { cborToJson, type JsonValue } from "./json.js";
export {
  ExecgateDenied,
  ExecgateReplyError,
  type IssuedToken,
  parseReply,
  type RedeemedToken,
  type Reply,
} from "./replies.js";
