import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { type SegmentEvent, segmentHeader } from "../lineage/bundle-files.js";
import { MAX_ENTRY_READ_BYTES } from "../lineage/entry.js";
import { checkRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../lineage/record.js";

/**
 * A bundle's segments read from disk as events, record by record through one fixed buffer, so a
 * log of any size is verified in bounded memory. Same events as segmentEvents over the bytes.
 */
const CHUNK = 4 << 20;
const MAX_RECORD = RECORD_HEADER_BYTES + MAX_ENTRY_READ_BYTES;

/** `paths` are bundle-relative (segments/NAME.seg); read in name order. */
export function* readSegmentEvents(
  dir: string,
  paths: readonly string[],
  chunk = CHUNK,
): Generator<SegmentEvent> {
  const buf = new Uint8Array(Math.max(chunk, MAX_RECORD + SEGMENT_HEADER_BYTES));
  for (const path of [...paths].sort()) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    const fd = openSync(join(dir, path), "r");
    try {
      let start = 0; // first unconsumed byte in buf
      let end = 0; // end of valid bytes in buf
      let offset = 0; // file offset of buf[0]
      let eof = false;
      const fill = () => {
        buf.copyWithin(0, start, end);
        offset += start;
        end -= start;
        start = 0;
        while (!eof && end < buf.length) {
          const n = readSync(fd, buf, end, buf.length - end, offset + end);
          if (n === 0) eof = true;
          end += n;
        }
      };
      fill();
      const header = segmentHeader(name, buf.subarray(0, Math.min(end, SEGMENT_HEADER_BYTES)));
      if ("reason" in header) {
        yield { kind: "header_error", name, reason: header.reason };
        continue;
      }
      yield { kind: "segment", name, first: header.first };
      start = SEGMENT_HEADER_BYTES;
      for (;;) {
        if (!eof && end - start < MAX_RECORD) fill();
        if (start >= end) break;
        const view = buf.subarray(0, end);
        const len = checkRecord(view, start, MAX_ENTRY_READ_BYTES);
        if (len < 0) {
          yield { kind: "bad_record", name, offset: offset + start };
          break;
        }
        // A copy: the buffer is reused, and the consumer may keep the bytes.
        yield {
          kind: "entry",
          bytes: buf.slice(start + RECORD_HEADER_BYTES, start + RECORD_HEADER_BYTES + len),
        };
        start += RECORD_HEADER_BYTES + len;
      }
    } finally {
      closeSync(fd);
    }
  }
}
