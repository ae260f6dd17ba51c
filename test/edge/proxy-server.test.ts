import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeProxyV1, encodeProxyV2 } from '../../dist/src/index.js';
import type { Connection, ServerOptions } from '../../dist/src/index.js';
import { TrustedProxies } from '../../dist/src/edge/trusted.js';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, lengthFrame, rawConnect, splitLengthFrames, within } from '../helpers/wire.js';

// PROXY protocol over real sockets: the handler (fixtures/peer.js) answers with the
// address it was told, so every test sees what ctx.remoteAddress/remotePort say.
const PEER = `${FIXTURES}peer.js`;
const CLIENT = { source: { address: '203.0.113.7', port: 40_123 }, destination: { address: '198.51.100.1', port: 443 } };

let running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.map((r) => r.close()));
  running = [];
});

async function serve(proxyProtocol: ServerOptions['proxyProtocol'], extra: Partial<ServerOptions> = {}): Promise<Running> {
  const r = await start({ handler: PEER, workers: 0, proxyProtocol, ...extra });
  running.push(r);
  return r;
}

const replies = (buf: Buffer): string[] => splitLengthFrames(buf).map((b) => b.toString());

describe('PROXY protocol from a trusted proxy', () => {
  for (const workers of [0, 2]) {
    it(`v1 and v2 name the real client to the handler (workers: ${workers}) and to server.connections`, async () => {
      const r = await serve({ mode: 'any', trusted: ['127.0.0.1'] }, { workers });
      const seen: Connection[] = [];
      r.server.on('connection', (c: Connection) => seen.push(c));
      expect(replies(await exchange(r.port, [encodeProxyV1(CLIENT.source, CLIENT.destination), lengthFrame('a'), lengthFrame('b')]))).toEqual([
        '203.0.113.7:40123',
        '203.0.113.7:40123',
      ]);
      const v6 = { source: { address: '2001:db8::42', port: 5 }, destination: { address: '2001:db8::1', port: 7000 } };
      // Header and first frame in one write: the bytes after the header reach the framer unchanged.
      expect(replies(await exchange(r.port, Buffer.concat([encodeProxyV2(v6), lengthFrame('x')])))).toEqual(['2001:db8::42:5']);
      expect(seen.map((c) => [c.remoteAddress, c.remotePort])).toEqual([
        ['203.0.113.7', 40_123],
        ['2001:db8::42', 5],
      ]);
      expect(seen[1]!.proxy).toMatchObject({ version: 2, family: 'tcp6', destination: { address: '2001:db8::1', port: 7000 } });
      expect(seen[1]!.socketAddress.address).toBe('127.0.0.1');
    });
  }

  it('a header split over many writes, TLVs and CRC32C reach connection.proxy', async () => {
    const r = await serve({ mode: 'v2', trusted: ['127.0.0.0/8'] });
    const conns: Connection[] = [];
    r.server.on('connection', (c: Connection) => conns.push(c));
    const header = encodeProxyV2({ ...CLIENT, tlvs: [{ type: 0x02, value: Buffer.from('shoal.example') }], crc: true });
    const peer = await rawConnect(r.port);
    for (let i = 0; i < header.length; i += 5) {
      peer.socket.write(header.subarray(i, i + 5));
      await new Promise((res) => setImmediate(res));
    }
    peer.socket.end(lengthFrame('hello'));
    await within(peer.closed, 10_000, 'close');
    expect(replies(peer.received())).toEqual(['203.0.113.7:40123']);
    expect(conns[0]!.proxy!.tlvs.map((t) => [t.type, t.value.toString('latin1')])).toEqual([
      [0x02, 'shoal.example'],
      [0x03, header.subarray(-4).toString('latin1')],
    ]);
  });

  it('LOCAL (a health check) is served with the socket address', async () => {
    const r = await serve({ mode: 'v2', trusted: ['127.0.0.1'] });
    const peer = await rawConnect(r.port);
    const local = `127.0.0.1:${peer.socket.localPort}`;
    peer.socket.end(Buffer.concat([encodeProxyV2({ command: 'local' }), lengthFrame('ping')]));
    await within(peer.closed, 10_000, 'close');
    expect(replies(peer.received())).toEqual([local]);
  });

  it('a malformed header, a missing one and a late one close only that connection, counted', async () => {
    const r = await serve({ mode: 'v1', trusted: ['127.0.0.1'], headerTimeout: 300 });
    const errors: string[] = [];
    r.server.on('edgeError', (e: { code: string }) => errors.push(e.code));
    // A well-behaved proxy connection stays open across the bad ones.
    const good = await rawConnect(r.port);
    good.socket.write(encodeProxyV1(CLIENT.source, CLIENT.destination));
    expect(await exchange(r.port, Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n'))).toHaveLength(0);
    expect(await exchange(r.port, lengthFrame('no header'))).toHaveLength(0);
    expect(await exchange(r.port, encodeProxyV2(CLIENT))).toHaveLength(0); // v2 where the mode says v1
    const late = await rawConnect(r.port);
    late.socket.write('PROXY TCP4 ');
    await within(late.ended, 10_000, 'the header deadline closing a half-sent header');
    expect(errors.sort()).toEqual(['SHOAL_PROXY_HEADER_INVALID', 'SHOAL_PROXY_HEADER_INVALID', 'SHOAL_PROXY_HEADER_INVALID', 'SHOAL_PROXY_HEADER_TIMEOUT']);
    expect(r.server.stats().counters).toMatchObject({ proxyHeaderErrors: 4, proxyHeadersRefused: 0, connectionsAccepted: 1 });
    good.socket.end(lengthFrame('still here'));
    await within(good.closed, 10_000, 'close');
    expect(replies(good.received())).toEqual(['203.0.113.7:40123']);
  });
});

describe('PROXY protocol from an untrusted address', () => {
  it('a header is refused (forged client address): closed and counted; one without is served as its socket', async () => {
    const r = await serve({ mode: 'any', trusted: ['10.0.0.0/8', 'fd00::/8'] });
    expect(await exchange(r.port, [encodeProxyV1(CLIENT.source, CLIENT.destination), lengthFrame('spoof')])).toHaveLength(0);
    expect(await exchange(r.port, [encodeProxyV2(CLIENT), lengthFrame('spoof')])).toHaveLength(0);
    // Split inside "PROXY ": refused once the prefix is whole.
    expect(await exchange(r.port, [Buffer.from('PRO'), Buffer.from('XY UNKNOWN\r\n')])).toHaveLength(0);
    const plain = await rawConnect(r.port);
    const own = `127.0.0.1:${plain.socket.localPort}`;
    plain.socket.end(Buffer.concat([lengthFrame('one'), lengthFrame('two')]));
    await within(plain.closed, 10_000, 'close');
    expect(replies(plain.received())).toEqual([own, own]);
    expect(r.server.stats().counters).toMatchObject({ proxyHeadersRefused: 3, proxyHeaderErrors: 0, connectionsAccepted: 1 });
  });

  it('a silent untrusted peer is handed on at the header deadline and then served', async () => {
    const r = await serve({ mode: 'v2', trusted: ['10.0.0.1'], headerTimeout: 200 });
    const conn = once(r.server, 'connection');
    const peer = await rawConnect(r.port);
    const own = `127.0.0.1:${peer.socket.localPort}`;
    await within(conn, 10_000, 'the connection after the header deadline');
    peer.socket.end(lengthFrame('late'));
    await within(peer.closed, 10_000, 'close');
    expect(replies(peer.received())).toEqual([own]);
  });
});

describe('TrustedProxies (net.BlockList)', () => {
  it('matches IPv4 and IPv6 blocks, and IPv4-mapped IPv6 addresses as the IPv4 they carry', () => {
    const t = new TrustedProxies(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32']);
    expect(t.has('10.200.3.4')).toBe(true);
    expect(t.has('11.0.0.1')).toBe(false);
    expect(t.has('127.0.0.1')).toBe(true);
    expect(t.has('127.0.0.2')).toBe(false);
    expect(t.has('::ffff:10.1.1.1')).toBe(true);
    expect(t.has('::ffff:127.0.0.1')).toBe(true);
    expect(t.has('::ffff:192.168.0.1')).toBe(false);
    expect(t.has('2001:db8:ffff::1')).toBe(true);
    expect(t.has('2001:db9::1')).toBe(false);
    expect(t.has('')).toBe(false);
  });

  it.each(['10.0.0.0/33', 'fd00::/129', 'not-an-ip', '10.0.0/8', ''])('refuses %j', (cidr) => {
    expect(() => new TrustedProxies([cidr])).toThrow(expect.objectContaining({ code: 'SHOAL_INVALID_OPTION' }));
  });
});

describe('ctx.proxy: the header reaches the handler, inline and in the workers', () => {
  for (const [workers, offload] of [[0, 'auto'], [2, 'always'], [2, 'auto']] as const) {
    it(`destination and TLVs (workers: ${workers}, offload: ${offload}); null for a connection without a header`, async () => {
      const r = await start({ handler: `${FIXTURES}proxy-info.js`, workers, offload, proxyProtocol: { mode: 'v2', trusted: ['127.0.0.1'] } });
      running.push(r);
      const header = encodeProxyV2({ ...CLIENT, tlvs: [{ type: 0x02, value: Buffer.from('shoal.example') }] });
      const got = replies(await exchange(r.port, Buffer.concat([header, ...Array.from({ length: 40 }, () => lengthFrame('?'))])));
      expect(got).toHaveLength(40);
      for (const g of got) {
        expect(JSON.parse(g)).toEqual({
          version: 2,
          destination: CLIENT.destination,
          tlvs: [[0x02, 'shoal.example']],
          client: `${CLIENT.source.address}:${CLIENT.source.port}`,
        });
      }
      const plain = await start({ handler: `${FIXTURES}proxy-info.js`, workers, offload });
      running.push(plain);
      expect(replies(await exchange(plain.port, lengthFrame('?')))).toEqual(['none']);
    });
  }
  it('after a reload too (the new generation sees the connection through a view)', async () => {
    const r = await start({ handler: `${FIXTURES}proxy-info.js`, workers: 2, offload: 'always', proxyProtocol: { mode: 'v2', trusted: ['127.0.0.1'] } });
    running.push(r);
    const peer = await rawConnect(r.port);
    peer.socket.write(Buffer.concat([encodeProxyV2(CLIENT), lengthFrame('?')]));
    await within(waitForFrames(peer, 1), 10_000, 'the first reply');
    await r.server.reload();
    peer.socket.write(lengthFrame('?'));
    await within(waitForFrames(peer, 2), 10_000, 'the reply after the reload');
    const got = replies(peer.received());
    expect(JSON.parse(got[1]!)).toMatchObject({ version: 2, destination: CLIENT.destination, client: `${CLIENT.source.address}:${CLIENT.source.port}` });
    peer.socket.destroy();
  });
});

/** Resolves once `peer` has received `n` whole length frames. */
async function waitForFrames(peer: Awaited<ReturnType<typeof rawConnect>>, n: number): Promise<void> {
  while (splitLengthFrames(peer.received()).length < n) await once(peer.socket, 'data');
}
