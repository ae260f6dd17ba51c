import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { runProgram, startProgram, startShoal, stopAll } from './helpers.js';

// Real OpenSSL against a real `shoal start --tls-cert --tls-key`: a throwaway CA and two
// server certificates made here with the openssl binary; s_client completes a verified
// handshake and gets its echo; SIGHUP swaps the certificate for new handshakes while an
// open TLS connection keeps working.
const dir = mkdtempSync(join(tmpdir(), 'shoal-openssl-'));
afterAll(() => {
  stopAll();
  rmSync(dir, { recursive: true, force: true });
});

function openssl(args: string[], input = ''): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return runProgram('openssl', args, { input, ms: 30_000 });
}

async function mustOpenssl(args: string[]): Promise<void> {
  const r = await openssl(args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA and, signed by it, two localhost certificates (organisations "one" and "two"). */
async function makeCerts(): Promise<void> {
  const p = (f: string): string => join(dir, f);
  writeFileSync(p('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await mustOpenssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=e2e CA']);
  for (const org of ['one', 'two']) {
    await mustOpenssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${org}.key`), '-out', p(`${org}.csr`), '-subj', `/CN=localhost/O=${org}`]);
    await mustOpenssl(['x509', '-req', '-in', p(`${org}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${org}.crt`), '-days', '2', '-extfile', p('san.ext')]);
  }
}

const frame = (body: string): Buffer => {
  const b = Buffer.from(body);
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
};

describe('TLS with real OpenSSL', () => {
  it('openssl s_client verifies the certificate and gets its reply; SIGHUP swaps the certificate for new handshakes only', async () => {
    await makeCerts();
    copyFileSync(join(dir, 'one.crt'), join(dir, 'live.crt'));
    copyFileSync(join(dir, 'one.key'), join(dir, 'live.key'));
    const shoal = await startShoal([
      '--handler', 'examples/echo/handler.js', '--workers', '2',
      '--tls-cert', join(dir, 'live.crt'), '--tls-key', join(dir, 'live.key'),
    ]);
    // The startup dump names the files, never their contents.
    expect(shoal.stdout()).toContain('live.key');
    expect(shoal.stdout()).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);

    // s_client sends the frame; once the echo is back its stdin ends, so it closes the TLS
    // session itself (close_notify) and exits 0 only if the handshake was verified.
    const sClient = async (): Promise<{ code: number | null; stdout: string; stderr: string }> => {
      const p = startProgram('openssl', ['s_client', '-connect', `127.0.0.1:${shoal.port}`, '-servername', 'localhost', '-CAfile', join(dir, 'ca.crt'), '-verify_return_error', '-brief']);
      p.child.stdin!.write(frame('hello over openssl'));
      await p.waitFor(/hello over openssl/);
      p.child.stdin!.end();
      const { code } = await p.exited;
      return { code, stdout: p.stdout(), stderr: p.stderr() };
    };
    const first = await sClient();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/Verification: OK/);
    expect(first.stderr).toMatch(/O ?= ?one/);
    expect(first.stdout).toBe(frame('hello over openssl').toString());

    // An open TLS connection from before the reload...
    const open = tlsConnect({ host: '127.0.0.1', port: shoal.port, ca: readFileSync(join(dir, 'ca.crt')), servername: 'localhost' });
    await once(open, 'secureConnect');
    copyFileSync(join(dir, 'two.crt'), join(dir, 'live.crt'));
    copyFileSync(join(dir, 'two.key'), join(dir, 'live.key'));
    process.kill(shoal.pid, 'SIGHUP');
    await shoal.waitFor(/TLS certificate reloaded/);
    const second = await sClient();
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/O ?= ?two/);
    expect(second.stdout).toBe(frame('hello over openssl').toString());
    // ...still answers, with the certificate it negotiated.
    expect(open.getPeerCertificate().subject.O).toBe('one');
    open.write(frame('still open'));
    const [reply] = (await once(open, 'data')) as [Buffer];
    expect(reply.equals(frame('still open'))).toBe(true);
    open.destroy();

    // A plaintext peer on the TLS port: a logged handshake failure; the server serves on.
    const plain = await runProgram('nc', ['-q1', '127.0.0.1', String(shoal.port)], { input: frame('plain') });
    expect(plain.stdout.includes(Buffer.from('plain'))).toBe(false);
    await shoal.waitFor(/SHOAL_TLS_HANDSHAKE_FAILED/);
    expect((await sClient()).code).toBe(0);
    expect((await shoal.stop('SIGTERM')).code).toBe(0);
  });
});
