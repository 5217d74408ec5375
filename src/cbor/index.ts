export { decode } from "./decode.js";
export { CborWriter, compareBytes, encode, encodeMapKey } from "./encode.js";
export {
  type CborKey,
  type CborObject,
  CborTag,
  type CborValue,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_ITEMS,
  DEFAULT_MAX_LENGTH,
  type DecodeLimits,
} from "./types.js";
