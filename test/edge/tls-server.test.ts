import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect, encodeProxyV1 } from '../../dist/src/index.js';
import type { ServerOptions } from '../../dist/src/index.js';
import { adminPort, sample, scrape } from '../admin/helpers.js';
import { EXAMPLES, FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { lengthFrame, rawConnect, splitLengthFrames, within } from '../helpers/wire.js';

// TLS over real sockets with the test-only certificates of test/fixtures/tls/ (see its README).
const TLS = `${FIXTURES}tls/`;
const CA = readFileSync(`${TLS}ca.crt`);
const PEER = `${FIXTURES}peer.js`;

const dir = mkdtempSync(join(tmpdir(), 'shoal-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.map((r) => r.close()));
  running = [];
});

async function serve(extra: Partial<ServerOptions> = {}, tls: ServerOptions['tls'] = { cert: `${TLS}server.crt`, key: `${TLS}server.key` }): Promise<Running> {
  const r = await start({ handler: EXAMPLES.echo, workers: 0, tls, ...extra });
  running.push(r);
  return r;
}

/** A TLS socket to the server, connected and verified against the test CA. */
async function tlsSocket(port: number): Promise<TLSSocket> {
  const s = tlsConnect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost' });
  await within(once(s, 'secureConnect'), 10_000, 'TLS handshake');
  return s;
}

/** Send length frames over `s`, read `n` replies back. */
async function roundTrip(s: TLSSocket, bodies: string[]): Promise<string[]> {
  const chunks: Buffer[] = [];
  const want = bodies.reduce((n, b) => n + 4 + Buffer.byteLength(b), 0);
  const got = new Promise<void>((resolve) => {
    const onData = (c: Buffer): void => {
      chunks.push(c);
      if (Buffer.concat(chunks).length >= want) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
  });
  for (const b of bodies) s.write(lengthFrame(b));
  await within(got, 10_000, 'replies over TLS');
  return splitLengthFrames(Buffer.concat(chunks)).map((b) => b.toString());
}

const org = (s: TLSSocket): string | undefined => s.getPeerCertificate().subject?.O as string | undefined;

describe('TLS', () => {
  for (const workers of [0, 2]) {
    it(`the shoal client does a real handshake and gets its replies (workers: ${workers})`, async () => {
      const r = await serve({ workers });
      const c = await r.client({ tls: { ca: CA, servername: 'localhost' } });
      const replies = await Promise.all(['one', 'two', 'three'].map((b) => c.request(b)));
      expect(replies.map((b) => b.toString())).toEqual(['one', 'two', 'three']);
      expect((c.socket as TLSSocket).getProtocol()).toMatch(/^TLSv1\.[23]$/);
    });
  }

  it('a half-closed TLS client still gets every reply before the server closes', async () => {
    const r = await serve();
    const s = await tlsSocket(r.port);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.end(Buffer.concat([lengthFrame('a'), lengthFrame('b')]));
    await within(once(s, 'close'), 10_000, 'server closing after the replies');
    expect(splitLengthFrames(Buffer.concat(chunks)).map((b) => b.toString())).toEqual(['a', 'b']);
  });

  it('PEM buffers work too, and the options dump never prints key material', async () => {
    const key = readFileSync(`${TLS}server.key`);
    const r = await serve({}, { cert: readFileSync(`${TLS}server.crt`), key, passphrase: 'unused' });
    const dump = JSON.stringify(r.server.options);
    expect(dump).toContain('"tls":{"cert":"<');
    expect(dump).not.toContain('PRIVATE KEY');
    expect(dump).not.toContain(key.toString('base64').slice(0, 40));
    expect(dump).not.toContain('unused');
    const c = await r.client({ tls: { ca: CA, servername: 'localhost' } });
    expect((await c.request('pem')).toString()).toBe('pem');
  });

  it('reloadTls() swaps the certificate for new handshakes; an open connection keeps working; a bad file keeps the old one', async () => {
    const cert = join(dir, 'swap.crt');
    const key = join(dir, 'swap.key');
    copyFileSync(`${TLS}server.crt`, cert);
    copyFileSync(`${TLS}server.key`, key);
    const r = await serve({}, { cert, key });
    const before = await tlsSocket(r.port);
    expect(org(before)).toBe('shoal test server');

    copyFileSync(`${TLS}server2.crt`, cert);
    copyFileSync(`${TLS}server2.key`, key);
    r.server.reloadTls();
    const after = await tlsSocket(r.port);
    expect(org(after)).toBe('shoal test server2');
    expect(await roundTrip(before, ['old connection'])).toEqual(['old connection']);
    expect(await roundTrip(after, ['new connection'])).toEqual(['new connection']);

    writeFileSync(cert, 'not a certificate');
    expect(() => r.server.reloadTls()).toThrow(expect.objectContaining({ code: 'SHOAL_TLS_RELOAD_FAILED' }));
    rmSync(key);
    expect(() => r.server.reloadTls()).toThrow(/cannot read tls.key file .*swap.key: ENOENT/);
    const still = await tlsSocket(r.port);
    expect(org(still)).toBe('shoal test server2');
    expect(await roundTrip(still, ['kept'])).toEqual(['kept']);
    for (const s of [before, after, still]) s.destroy();
  });

  it('a silent TCP peer is cut at tlsHandshakeTimeout, counted, and the server keeps serving', async () => {
    const r = await serve({ tlsHandshakeTimeout: 200 });
    const silent = await rawConnect(r.port);
    await within(silent.ended, 10_000, 'the handshake deadline closing a silent peer');
    expect(r.server.stats().counters.tlsHandshakeFailures).toBe(1);
    const c = await r.client({ tls: { ca: CA, servername: 'localhost' } });
    expect((await c.request('alive')).toString()).toBe('alive');
    silent.socket.destroy();
  });

  it('a plaintext client on the TLS port is a counted handshake failure, not a crash; metrics show it', async () => {
    const errors: string[] = [];
    const r = await serve({ admin: { port: 0 } });
    r.server.on('edgeError', (e: { code: string }) => errors.push(e.code));
    const plain = await rawConnect(r.port);
    plain.socket.write(lengthFrame('hello in the clear'));
    await within(plain.ended, 10_000, 'server closing a plaintext peer');
    expect(errors).toEqual(['SHOAL_TLS_HANDSHAKE_FAILED']);
    expect(r.server.stats().counters).toMatchObject({ tlsHandshakeFailures: 1, connectionsAccepted: 0 });
    expect(sample(await scrape(adminPort(r.server)), 'shoal_tls_handshake_failures_total')).toBe(1);
    const c = await r.client({ tls: { ca: CA, servername: 'localhost' } });
    expect((await c.request('fine')).toString()).toBe('fine');
  });

  it('requestCert: a client certificate signed by the CA is required', async () => {
    const r = await serve({}, { cert: `${TLS}server.crt`, key: `${TLS}server.key`, ca: `${TLS}ca.crt`, requestCert: true });
    const withCert = await r.client({ tls: { ca: CA, servername: 'localhost', cert: readFileSync(`${TLS}client.crt`), key: readFileSync(`${TLS}client.key`) } });
    expect((await withCert.request('mtls')).toString()).toBe('mtls');
    // Without one the server ends the handshake (TLS 1.3: the client learns it on its first read).
    const without = await connect({ port: r.port, tls: { ca: CA, servername: 'localhost' } }).catch((e: Error) => e);
    if (without instanceof Error) {
      expect(without).toMatchObject({ code: 'SHOAL_CONNECTION_CLOSED' });
    } else {
      await expect(without.request('x')).rejects.toMatchObject({ code: 'SHOAL_CONNECTION_CLOSED' });
    }
  });

  it('with PROXY protocol, the header comes before the handshake and names the client', async () => {
    const r = await serve({ handler: PEER, proxyProtocol: { mode: 'v1', trusted: ['127.0.0.1'] } });
    const raw = await rawConnect(r.port);
    raw.socket.write(encodeProxyV1({ address: '192.0.2.44', port: 1234 }, { address: '192.0.2.1', port: 443 }));
    const s = tlsConnect({ socket: raw.socket, ca: CA, servername: 'localhost' });
    await within(once(s, 'secureConnect'), 10_000, 'TLS handshake after the PROXY header');
    expect(await roundTrip(s, ['who'])).toEqual(['192.0.2.44:1234']);
    s.destroy();
  });

  it('bad tls options fail at createServer, naming the problem', async () => {
    await expect(serve({}, { cert: `${TLS}server.crt` } as never)).rejects.toThrow(/tls.key is required/);
    await expect(serve({}, { cert: `${TLS}server.crt`, key: join(dir, 'missing.key') })).rejects.toThrow(/cannot read tls.key file .*missing.key/);
    await expect(serve({}, { cert: `${TLS}server.crt`, key: `${TLS}server2.key` })).rejects.toMatchObject({ code: 'SHOAL_INVALID_OPTION' });
  });
});
