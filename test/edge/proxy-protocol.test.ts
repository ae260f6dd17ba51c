import { SocketAddress } from 'node:net';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ProxyHeaderDecoder,
  V1_MAX_BYTES,
  V2_MAX_BYTES,
  encodeProxyV1,
  encodeProxyV2,
  sniffProxyHeader,
} from '../../dist/src/edge/proxy-protocol.js';
import type { ProxyDecodeResult, ProxyHeader, ProxyMode } from '../../dist/src/edge/proxy-protocol.js';
import { crc32c } from '../../dist/src/edge/crc32c.js';
import { ShoalError } from '../../dist/src/errors.js';
import { bytes, chunkings, splitAt } from '../framing/helpers.js';

const SIG = '0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A';
const RUNS = { numRuns: 300, seed: 20_261_201 };

/** Feed chunks one by one; the result (header + every byte after it, joined) or the error code. */
function feed(mode: ProxyMode, chunks: Buffer[]): { header: ProxyHeader; rest: Buffer } | { error: string; message: string } | null {
  const d = new ProxyHeaderDecoder(mode);
  let got: ProxyDecodeResult | null = null;
  const after: Buffer[] = [];
  try {
    for (const c of chunks) {
      if (got) after.push(c);
      else got = d.push(c);
    }
  } catch (err) {
    if (!(err instanceof ShoalError)) throw err;
    return { error: err.code, message: err.message };
  }
  if (!got) return null;
  return { header: got.header, rest: Buffer.concat([got.rest, ...after]) };
}

const tcp4 = (src: string, sp: number, dst: string, dp: number) => ({ source: { address: src, port: sp }, destination: { address: dst, port: dp } });

// BEFORE (bytes on the wire) -> AFTER (what the decoder says, and what it leaves for the framer).
const GOOD: { name: string; mode: ProxyMode; wire: string; header: Partial<ProxyHeader>; rest: string }[] = [
  {
    name: 'v1 TCP4',
    mode: 'v1',
    wire: '"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\\r\\n" 00 00 00 02 "hi"',
    header: { version: 1, command: 'proxy', family: 'tcp4', ...tcp4('192.0.2.1', 56324, '198.51.100.7', 443), tlvs: [] },
    rest: '00 00 00 02 "hi"',
  },
  {
    name: 'v1 TCP6',
    mode: 'any',
    wire: '"PROXY TCP6 2001:db8::1 ::1 65535 0\\r\\n"',
    header: { version: 1, family: 'tcp6', ...tcp4('2001:db8::1', 65535, '::1', 0) },
    rest: '',
  },
  {
    name: 'v1 UNKNOWN, short form',
    mode: 'v1',
    wire: '"PROXY UNKNOWN\\r\\n" "x"',
    header: { version: 1, family: 'unknown', source: null, destination: null },
    rest: '"x"',
  },
  {
    name: 'v1 UNKNOWN, the rest of the line ignored',
    mode: 'any',
    wire: '"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\\r\\n"',
    header: { version: 1, family: 'unknown', source: null },
    rest: '',
  },
  {
    name: 'v2 PROXY TCP4 (HAProxy send-proxy-v2, no TLV)',
    mode: 'v2',
    wire: `${SIG} 21 11 00 0C AC 13 00 01 AC 13 00 03 A6 52 00 50 "GET"`,
    header: { version: 2, command: 'proxy', family: 'tcp4', ...tcp4('172.19.0.1', 42578, '172.19.0.3', 80), tlvs: [] },
    rest: '"GET"',
  },
  {
    name: 'v2 PROXY TCP6 with an ALPN TLV',
    mode: 'any',
    wire: `${SIG} 21 21 00 29 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 30 39 01 BB 01 00 02 "h2"`,
    header: { version: 2, family: 'tcp6', ...tcp4('2001:db8::1', 12345, '::1', 443), tlvs: [{ type: 1, value: Buffer.from('h2') }] },
    rest: '',
  },
  {
    name: 'v2 PROXY TCP6, an IPv4-mapped client',
    mode: 'v2',
    wire: `${SIG} 21 21 00 24 00 00 00 00 00 00 00 00 00 00 FF FF 7F 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 04 D2 00 50`,
    header: { family: 'tcp6', ...tcp4('::ffff:127.0.0.1', 1234, '::1', 80) },
    rest: '',
  },
  {
    name: 'v2 LOCAL (a health check): no client, the block is discarded',
    mode: 'v2',
    wire: `${SIG} 20 00 00 00 00 00 00 07`,
    header: { version: 2, command: 'local', family: 'unknown', source: null, destination: null, tlvs: [] },
    rest: '00 00 00 07',
  },
  {
    name: 'v2 LOCAL with an address block: still ignored',
    mode: 'any',
    wire: `${SIG} 20 11 00 0C 01 02 03 04 05 06 07 08 00 01 00 02`,
    header: { command: 'local', source: null },
    rest: '',
  },
  {
    name: 'v2 PROXY UNSPEC: no client named',
    mode: 'v2',
    wire: `${SIG} 21 00 00 03 AA BB CC "z"`,
    header: { command: 'proxy', family: 'unknown', source: null },
    rest: '"z"',
  },
];

const BAD: { name: string; mode: ProxyMode; wire: string; message: RegExp }[] = [
  { name: 'not a header at all', mode: 'any', wire: '00 00 00 05 "hello"', message: /expected a PROXY v1 line or v2 signature/ },
  { name: 'v2 header in v1 mode', mode: 'v1', wire: `${SIG} 21 11 00 0C`, message: /expected a PROXY v1 line/ },
  { name: 'v1 line in v2 mode', mode: 'v2', wire: '"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\\r\\n"', message: /v2 signature/ },
  { name: 'v1 protocol not TCP4/TCP6/UNKNOWN', mode: 'v1', wire: '"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\\r\\n"', message: /TCP4, TCP6 or UNKNOWN/ },
  { name: 'v1 TCP4 with IPv6 addresses', mode: 'v1', wire: '"PROXY TCP4 ::1 ::1 1 2\\r\\n"', message: /TCP4 addresses/ },
  { name: 'v1 missing a field', mode: 'v1', wire: '"PROXY TCP4 1.2.3.4 5.6.7.8 1\\r\\n"', message: /src dst sport dport/ },
  { name: 'v1 double space', mode: 'v1', wire: '"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\\r\\n"', message: /src dst sport dport/ },
  { name: 'v1 port over 65535', mode: 'v1', wire: '"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\\r\\n"', message: /port must be/ },
  { name: 'v1 port with a leading zero', mode: 'v1', wire: '"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\\r\\n"', message: /port must be/ },
  { name: 'v1 bare LF', mode: 'v1', wire: '"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\\n"', message: /byte 0x0a/ },
  { name: 'v1 CR without LF', mode: 'v1', wire: '"PROXY UNKNOWN\\rx"', message: /CR at offset 13 not followed by LF/ },
  { name: 'v1 no CRLF within 107 bytes', mode: 'v1', wire: `"PROXY UNKNOWN ${'a'.repeat(100)}"`, message: /no CRLF within 107 bytes/ },
  { name: 'v1 control byte', mode: 'v1', wire: '"PROXY TCP4 1.2.3.4" 00', message: /byte 0x00/ },
  { name: 'v2 version 1', mode: 'v2', wire: `${SIG} 11 11 00 0C`, message: /version 1 \(must be 2\)/ },
  { name: 'v2 command 2', mode: 'v2', wire: `${SIG} 22 11 00 0C`, message: /unknown command 2/ },
  { name: 'v2 family 4', mode: 'v2', wire: `${SIG} 21 41 00 0C`, message: /unknown address family 4/ },
  { name: 'v2 protocol 3', mode: 'v2', wire: `${SIG} 21 13 00 0C`, message: /unknown transport protocol 3/ },
  { name: 'v2 INET with a short block', mode: 'v2', wire: `${SIG} 21 11 00 08 01 02 03 04 05 06 07 08`, message: /needs 12 address bytes/ },
  { name: 'v2 header over the bound', mode: 'v2', wire: `${SIG} 21 11 FF FF`, message: new RegExp(`exceeds the maximum of ${V2_MAX_BYTES}`) },
  { name: 'v2 TLV overrunning the header', mode: 'v2', wire: `${SIG} 21 11 00 10 01 02 03 04 05 06 07 08 00 01 00 02 04 00 09 00`, message: /overruns the header/ },
  { name: 'v2 stray bytes after the TLVs', mode: 'v2', wire: `${SIG} 21 11 00 0E 01 02 03 04 05 06 07 08 00 01 00 02 04 00`, message: /2 stray bytes/ },
  { name: 'v2 CRC32C TLV of 2 bytes', mode: 'v2', wire: `${SIG} 21 11 00 11 01 02 03 04 05 06 07 08 00 01 00 02 03 00 02 00 00`, message: /CRC32C TLV of 2 bytes/ },
];

describe('PROXY protocol decoder: byte tables, fed split at every offset', () => {
  for (const row of GOOD) {
    it(row.name, () => {
      const wire = bytes(row.wire);
      for (const chunks of chunkings(wire)) {
        const r = feed(row.mode, chunks);
        expect(r, `chunks ${chunks.map((c) => c.length).join('+')}`).not.toBeNull();
        if (r === null || 'error' in r) throw new Error(`unexpected ${JSON.stringify(r)}`);
        expect(r.header).toMatchObject(row.header);
        expect(r.rest.toString('hex')).toBe(bytes(row.rest).toString('hex'));
      }
    });
  }
  for (const row of BAD) {
    it(`refuses: ${row.name}`, () => {
      const wire = bytes(row.wire);
      for (const chunks of chunkings(wire)) {
        const r = feed(row.mode, chunks);
        expect(r, `chunks ${chunks.map((c) => c.length).join('+')}`).toMatchObject({ error: 'SHOAL_PROXY_HEADER_INVALID' });
        expect((r as { message: string }).message).toMatch(row.message);
      }
    });
  }

  it('refuses at the first byte that cannot start a header, without waiting for more', () => {
    expect(() => new ProxyHeaderDecoder('any').push(Buffer.from('G'))).toThrow(/expected/);
    expect(() => new ProxyHeaderDecoder('v2').push(bytes('0D 0A 0D 0B'))).toThrow(/v2 signature/);
    // A v2 version byte is judged as soon as it arrives, before the length.
    expect(() => new ProxyHeaderDecoder('v2').push(bytes(`${SIG} 31`))).toThrow(/version 3/);
  });

  it('verifies a CRC32C TLV: a good one passes, one flipped bit anywhere fails', () => {
    const good = encodeProxyV2({ ...tcp4('10.1.2.3', 4000, '10.9.9.9', 443), tlvs: [{ type: 0x05, value: Buffer.from('id-1') }], crc: true });
    const r = feed('v2', [good]);
    expect(r).toMatchObject({ header: { source: { address: '10.1.2.3', port: 4000 } } });
    const types = (r as { header: ProxyHeader }).header.tlvs.map((t) => t.type);
    expect(types).toEqual([0x05, 0x03]);
    // Every byte but the CRC TLV's own type byte: changed, it is no CRC TLV any more, which
    // no receiver can tell (the protocol's limit, not the parser's).
    const crcType = good.length - 7;
    for (let i = 16; i < good.length; i++) {
      if (i === crcType) continue;
      const bad = Buffer.from(good);
      bad[i] ^= 0x01;
      const out = feed('v2', [bad]);
      expect(out && 'error' in out ? out.error : 'accepted', `bit flipped at ${i}`).toBe('SHOAL_PROXY_HEADER_INVALID');
    }
  });

  it('CRC-32C matches the standard check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('UNIX family: NUL-terminated paths, port 0', () => {
    const wire = encodeProxyV2({ family: 'unix', source: { address: '/run/client.sock', port: 0 }, destination: { address: '/run/shoal.sock', port: 0 } });
    expect(wire.length).toBe(16 + 216);
    expect(feed('v2', [wire])).toMatchObject({ header: { family: 'unix', source: { address: '/run/client.sock', port: 0 }, destination: { address: '/run/shoal.sock' } } });
  });

  it('v1 at exactly the 107-byte bound is accepted', () => {
    const line = `PROXY UNKNOWN ${'a'.repeat(V1_MAX_BYTES - 16)}\r\n`;
    expect(line.length).toBe(V1_MAX_BYTES);
    expect(feed('v1', [Buffer.from(line)])).toMatchObject({ header: { family: 'unknown' } });
  });
});

describe('sniffProxyHeader (peers that may not send one)', () => {
  it.each([
    ['', 'maybe'],
    ['P', 'maybe'],
    ['PROXY', 'maybe'],
    ['PROXY ', 'yes'],
    ['PROXY TCP4', 'yes'],
    ['PROXZ', 'no'],
    ['\r\n\r\n', 'maybe'],
    ['\r\n\r\n\0\r\nQUIT\n', 'yes'],
    ['\r\n\r\n\0\r\nQUIT!', 'no'],
    ['\0\0\0\x04ping', 'no'],
  ])('%j -> %s', (text, want) => {
    expect(sniffProxyHeader(Buffer.from(text, 'latin1'))).toBe(want);
  });
});

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((q) => q.join('.'));
const ipv6 = fc.ipV6();
const port = fc.nat(65535);

describe('PROXY protocol decoder: properties (fast-check)', () => {
  it('v1 and v2 round-trip for any addresses, split anywhere; the rest is untouched', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.oneof(fc.tuple(ipv4, ipv4), fc.tuple(ipv6, ipv6)),
        port,
        port,
        fc.array(fc.record({ type: fc.integer({ min: 0x04, max: 0xff }).filter((t) => t !== 0x03), value: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 4 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.nat(400), { maxLength: 6 }),
        (v2, [src, dst], sp, dp, tlvs, crc, rest, cuts) => {
          const source = { address: src, port: sp };
          const destination = { address: dst, port: dp };
          const tlvList = tlvs.map((t) => ({ type: t.type, value: Buffer.from(t.value) }));
          const header = v2 ? encodeProxyV2({ source, destination, tlvs: tlvList, crc }) : encodeProxyV1(source, destination);
          const wire = Buffer.concat([header, rest]);
          const r = feed('any', splitAt(wire, cuts));
          if (r === null || 'error' in r) throw new Error(`not decoded: ${JSON.stringify(r)}`);
          // The decoder writes IPv6 the way Node does (RFC 5952); compare through a normal form.
          const norm = (a: string) => (a.includes(':') ? new SocketAddress({ address: a, family: 'ipv6' }).address : a);
          expect(norm(r.header.source!.address)).toBe(norm(src));
          expect(r.header.source!.port).toBe(sp);
          expect(norm(r.header.destination!.address)).toBe(norm(dst));
          expect(r.header.destination!.port).toBe(dp);
          if (v2) expect(r.header.tlvs.slice(0, tlvList.length)).toEqual(tlvList);
          expect(r.rest.toString('hex')).toBe(Buffer.from(rest).toString('hex'));
        },
      ),
      RUNS,
    );
  });

  it('IPv6 addresses come out as the text net.Socket reports (inet_ntop)', () => {
    fc.assert(
      fc.property(ipv6, (a) => {
        const r = feed('v2', [encodeProxyV2(tcp4(a, 1, '::1', 2))]);
        if (r === null || 'error' in r) throw new Error('not decoded');
        const got = r.header.source!.address;
        expect(got).toBe(new SocketAddress({ address: a, family: 'ipv6' }).address);
      }),
      RUNS,
    );
  });

  it('arbitrary bytes: a header, a coded refusal or "need more", never another error or an unbounded buffer', () => {
    const prefix = fc.constantFrom(Buffer.alloc(0), bytes(SIG), Buffer.from('PROXY '), bytes(`${SIG} 21`), bytes(`${SIG} 21 11`));
    fc.assert(
      fc.property(prefix, fc.uint8Array({ maxLength: 600 }), fc.constantFrom<ProxyMode>('v1', 'v2', 'any'), fc.array(fc.nat(700), { maxLength: 5 }), (pre, body, mode, cuts) => {
        const d = new ProxyHeaderDecoder(mode);
        for (const chunk of splitAt(Buffer.concat([pre, body]), cuts)) {
          try {
            if (d.push(chunk) !== null) return;
          } catch (err) {
            expect(err).toBeInstanceOf(ShoalError);
            expect((err as ShoalError).code).toBe('SHOAL_PROXY_HEADER_INVALID');
            return;
          }
          expect(d.buffered).toBeLessThan(Math.max(V1_MAX_BYTES, V2_MAX_BYTES));
        }
      }),
      RUNS,
    );
  });

  it('one corrupted byte of a v2 header with CRC32C is never accepted as a different client', () => {
    fc.assert(
      fc.property(ipv4, ipv4, port, port, fc.nat(), fc.integer({ min: 1, max: 255 }), (src, dst, sp, dp, where, flip) => {
        const good = encodeProxyV2({ ...tcp4(src, sp, dst, dp), crc: true });
        // Any byte but the CRC TLV's type byte (see above); its length and value bytes included.
        let i = where % (good.length - 1);
        if (i >= good.length - 7) i++;
        const bad = Buffer.from(good);
        bad[i] ^= flip;
        const r = feed('v2', [bad]);
        // Refused, incomplete, or turned into LOCAL/UNSPEC (which name no client, so the
        // socket's own address stands): never a different client.
        if (r !== null && !('error' in r) && r.header.source !== null) {
          throw new Error(`corruption at ${i} accepted: ${JSON.stringify(r.header)}`);
        }
      }),
      RUNS,
    );
  });
});
