import { describe, expect, it } from 'vitest';
import { START_HELP, startOptionsFromFlags } from '../../dist/src/cli/start.js';

// shoal start's TLS and PROXY protocol flags map onto the tls / proxyProtocol options.
describe('shoal start: TLS and PROXY protocol flags', () => {
  const base = { handler: 'h.js' };

  it('--tls-cert/--tls-key/--tls-ca/--tls-request-cert and --tls-handshake-timeout', () => {
    const { options } = startOptionsFromFlags({ ...base, 'tls-cert': 'c.pem', 'tls-key': 'k.pem', 'tls-ca': 'ca.pem', 'tls-request-cert': true, 'tls-handshake-timeout': '2s' });
    expect(options.tls).toEqual({ cert: 'c.pem', key: 'k.pem', ca: 'ca.pem', requestCert: true });
    expect(options.tlsHandshakeTimeout).toBe(2000);
    expect(startOptionsFromFlags(base).options.tls).toBeUndefined();
  });

  it('refuses half a TLS configuration', () => {
    expect(() => startOptionsFromFlags({ ...base, 'tls-cert': 'c.pem' })).toThrow(/both --tls-cert <file> and --tls-key <file>/);
    expect(() => startOptionsFromFlags({ ...base, 'tls-ca': 'ca.pem' })).toThrow(/need --tls-cert and --tls-key/);
    expect(() => startOptionsFromFlags({ ...base, 'tls-cert': 'c', 'tls-key': 'k', 'tls-request-cert': true })).toThrow(/needs --tls-ca/);
  });

  it('--proxy-protocol with --trusted-proxy CIDR[,CIDR] and --proxy-header-timeout', () => {
    const { options } = startOptionsFromFlags({ ...base, 'proxy-protocol': 'v2', 'trusted-proxy': '10.0.0.0/8, ::1', 'proxy-header-timeout': '1s' });
    expect(options.proxyProtocol).toEqual({ mode: 'v2', trusted: ['10.0.0.0/8', '::1'], headerTimeout: 1000 });
    expect(() => startOptionsFromFlags({ ...base, 'proxy-protocol': 'v3', 'trusted-proxy': '::1' })).toThrow(/--proxy-protocol must be one of v1, v2, any/);
    expect(() => startOptionsFromFlags({ ...base, 'proxy-protocol': 'any' })).toThrow(/needs --trusted-proxy/);
    expect(() => startOptionsFromFlags({ ...base, 'trusted-proxy': '::1' })).toThrow(/need --proxy-protocol/);
  });

  it('--help lists them with their real defaults', () => {
    for (const flag of ['--tls-cert', '--tls-key', '--tls-ca', '--tls-request-cert', '--proxy-protocol', '--trusted-proxy']) expect(START_HELP).toContain(flag);
    expect(START_HELP).toMatch(/--tls-handshake-timeout <dur>[^\n]*\n?[^\n]*\(default 10s\)/);
    expect(START_HELP).toMatch(/--proxy-header-timeout <dur>[^\n]*\n?[^\n]*\(default 5s\)/);
  });
});
