/**
 * The cold-start memory reference: a plain Node `net` server answering the bench protocol's
 * echo (K = 0) with no framework at all, so shoal's per-connection RSS has a floor to be
 * read against.
 *
 *   node dist/bench/net-echo-server.js [--host H] [--port P]
 *
 * Logs `{"msg":"listening","port":P}` on stdout like `shoal start`; SIGTERM/SIGINT close it.
 * A frame with K > 0 or shorter than 4 bytes closes its connection (echo only).
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } }, strict: true });
const MAX_FRAME = 1 << 20;

const server = createServer({ noDelay: true }, (socket) => {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length - at >= 4) {
      const len = pending.readUInt32BE(at);
      if (len < 4 || len > MAX_FRAME) return socket.destroy();
      if (pending.length - at < 4 + len) break;
      if (pending.readUInt32BE(at + 4) !== 0) return socket.destroy();
      const reply = Buffer.allocUnsafe(len);
      reply.writeUInt32BE(len - 4, 0);
      pending.copy(reply, 4, at + 8, at + 4 + len);
      socket.write(reply);
      at += 4 + len;
    }
    pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
  });
});
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => server.close(() => process.exit(0)));
