import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startProgram, startShoal, stopAll } from './helpers.js';

// Real HAProxy 2.6 in front of a real `shoal start`: HAProxy connects to shoal from
// 127.0.0.2 (the only trusted proxy) and writes a PROXY header (send-proxy: v1,
// send-proxy-v2: v2); the handler (test/fixtures/peer.js) answers with the address
// it was told, which must be the client's own loopback address and port, not HAProxy's.
const dir = mkdtempSync(join(tmpdir(), 'shoal-haproxy-'));
afterAll(() => {
  stopAll();
  rmSync(dir, { recursive: true, force: true });
});

async function freePort(host: string): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const frame = (body: string): Buffer => {
  const b = Buffer.from(body);
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
};

/** Connect (retrying while HAProxy binds, at most `ms`), send one frame, read one reply frame. */
async function ask(host: string, port: number, ms = 10_000): Promise<{ reply: string; local: string; closed: boolean }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const socket = connect({ host, port });
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    if (!ok) {
      if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    return readOne(socket, `${socket.localAddress}:${socket.localPort}`);
  }
}

function readOne(socket: Socket, local: string): Promise<{ reply: string; local: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`no reply on ${local}`)), 10_000);
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      const len = buf.length >= 4 ? buf.readUInt32BE(0) : -1;
      resolve({ reply: len >= 0 ? buf.subarray(4, 4 + len).toString() : '', local, closed });
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) done(false);
    });
    socket.on('error', () => {});
    socket.on('close', () => done(true));
    socket.write(frame('who am i'));
  });
}

describe('behind real HAProxy (send-proxy, send-proxy-v2)', () => {
  it('the handler sees the real client address and port; forged headers from untrusted addresses are refused', async () => {
    const shoal = await startShoal(['--handler', 'test/fixtures/peer.js', '--workers', '2', '--proxy-protocol', 'any', '--trusted-proxy', '127.0.0.2/32']);
    const [v1, v2, v1six] = [await freePort('127.0.0.1'), await freePort('127.0.0.1'), await freePort('::1')];
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        '  maxconn 100',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        `frontend v1`,
        `  bind 127.0.0.1:${v1}`,
        `  default_backend shoal_v1`,
        `frontend v2`,
        `  bind 127.0.0.1:${v2}`,
        `  default_backend shoal_v2`,
        `frontend v1six`,
        `  bind [::1]:${v1six}`,
        `  default_backend shoal_v1`,
        'backend shoal_v1',
        `  server s1 127.0.0.1:${shoal.port} send-proxy source 127.0.0.2`,
        'backend shoal_v2',
        `  server s1 127.0.0.1:${shoal.port} send-proxy-v2 source 127.0.0.2`,
        '',
      ].join('\n'),
    );
    const haproxy = startProgram('haproxy', ['-db', '-f', cfg]);

    const a = await ask('127.0.0.1', v1);
    expect(a.reply).toBe(a.local); // "127.0.0.1:<the client's own port>"
    const b = await ask('127.0.0.1', v2);
    expect(b.reply).toBe(b.local);
    const c = await ask('::1', v1six);
    expect(c.reply).toBe(c.local); // TCP6 in the v1 line: "::1:<port>"
    expect(c.reply).toMatch(/^::1:\d+$/);

    // Straight to shoal from 127.0.0.1 (not trusted): a forged header is refused and the
    // connection closed; a plain client is served under its own address.
    const forged = connect({ host: '127.0.0.1', port: shoal.port });
    await new Promise((r) => forged.once('connect', r));
    forged.write('PROXY TCP4 6.6.6.6 127.0.0.1 666 1\r\n');
    const f = await readOne(forged, 'forged');
    expect(f).toMatchObject({ reply: '', closed: true });
    const plain = await ask('127.0.0.1', shoal.port);
    expect(plain.reply).toBe(plain.local);

    await shoal.waitFor(/"code":"SHOAL_PROXY_HEADER_REFUSED"[^\n]*connection refused/);
    await haproxy.stop('SIGTERM');
    expect((await shoal.stop('SIGTERM')).code).toBe(0);
  });
});
