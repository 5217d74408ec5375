/**
 * The ceiling for any daemon that signs each token: a server over the daemon's framing that parses
 * a token.request, builds the same claims and signs the same COSE_Sign1 (Ed25519) as the daemon,
 * and replies — with no lineage, no policy, no caller identification and no attestation. The
 * daemon suite runs it in its own process beside the echo server and the daemon, with the same
 * client, so the three rows of one run share the machine's state.
 *
 *   node dist/scripts/bench/naive-token-server.js SOCKET   (prints "ready" once listening)
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { issueToken } from "../../src/token/token.js";
import { encodeFrame, FrameDecoder } from "../../src/wire/frame.js";
import { okReply } from "../../src/wire/reply.js";
import { parseRequest } from "../../src/wire/request.js";

const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write("usage: naive-token-server.js SOCKET\n");
  process.exit(2);
}
const { privateKey } = generateKeyPairSync("ed25519");
// Stand-ins for the digests the daemon takes from its evidence and the caller.
const digest = new Uint8Array(randomBytes(32));
const ueid = new Uint8Array([1, ...digest]);
let counter = 0n;

createServer((socket) => {
  const frames = new FrameDecoder();
  socket.on("data", (chunk: Buffer) => {
    for (const frame of frames.push(new Uint8Array(chunk))) {
      const req = parseRequest(frame);
      if (req.op !== "token.request") throw new Error(`naive token server: unexpected ${req.op}`);
      const nowS = Math.floor(Date.now() / 1000);
      const cti = new Uint8Array(16);
      new DataView(cti.buffer).setBigUint64(8, ++counter);
      const token = issueToken(
        {
          iss: "execgate",
          sub: "uid:0",
          aud: "execgate",
          exp: nowS + 60,
          nbf: nowS,
          iat: nowS,
          cti,
          ueid,
          scope: req.args.scope,
          action: req.args.action,
          peer: { uid: 0, gid: 0, pid: 1, exe: digest },
          epoch: digest,
          pcrDigest: digest,
          policyDigest: digest,
          bootId: "00000000-0000-0000-0000-000000000000",
          lineage: [1_000_000, digest],
        },
        privateKey,
      );
      socket.write(encodeFrame(okReply(req.id, { token, token_id: cti, expires: nowS + 60 })));
    }
  });
  socket.on("error", () => socket.destroy());
}).listen(socketPath, () => process.stdout.write("ready\n"));
