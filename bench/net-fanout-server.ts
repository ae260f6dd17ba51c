/**
 * The fan-out bench's reference (bench/fanout.ts): a plain Node `net` server doing the
 * same fan-out on its main thread, no framework: [u32 BE length][body] frames; a body
 * starting with 'J' joins the one group (reply "j"), any other is written, framed, to
 * every member (one Buffer, one socket.write per member).
 *
 *   node dist/bench/net-fanout-server.js [--host H] [--port P]
 *
 * Logs `{"msg":"listening","port":P}` on stdout like `shoal start`; SIGTERM closes it.
 */
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } }, strict: true });
const MAX_FRAME = 1 << 20;
const members = new Set<Socket>();
const JOINED = Buffer.from([0, 0, 0, 1, 0x6a]);

const server = createServer({ noDelay: true }, (socket) => {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('close', () => members.delete(socket));
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length - at >= 4) {
      const len = pending.readUInt32BE(at);
      if (len < 1 || len > MAX_FRAME) return socket.destroy();
      if (pending.length - at < 4 + len) break;
      if (pending[at + 4] === 0x4a) {
        members.add(socket);
        socket.write(JOINED);
      } else {
        const frame = Buffer.from(pending.subarray(at, at + 4 + len));
        for (const m of members) m.write(frame);
      }
      at += 4 + len;
    }
    pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
  });
});
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
for (const s of ['SIGTERM', 'SIGINT'] as const) {
  process.on(s, () => {
    for (const m of members) m.destroy();
    server.close(() => process.exit(0));
  });
}
