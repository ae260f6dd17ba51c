/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: the header
 * an L4 proxy writes first on each connection it opens to us, naming the real
 * client. Pure, like src/framing/: bytes in, a header (and the bytes after it)
 * out, no sockets. isIPv4/isIPv6 from node:net are plain string checks.
 *
 * v1, one text line of at most 107 bytes:
 *   "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
 *   "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"
 *   "PROXY UNKNOWN[ anything]\r\n"                 (the proxy does not know: use the socket's)
 *
 * v2, binary:
 *   0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a   signature
 *   21                                    version 2 (high nibble), command (low): 0 LOCAL, 1 PROXY
 *   11                                    family (high): 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX;
 *                                         protocol (low): 0 UNSPEC, 1 STREAM, 2 DGRAM
 *   00 0c                                 length of what follows (big endian)
 *   c0 00 02 01  c6 33 64 01  dc 04 01 bb addresses: INET 12 bytes, INET6 36, UNIX 216
 *   [type u8][length u16 BE][value] ...   TLVs up to the length; type 0x03 = CRC-32C of the
 *                                         whole header with that value zeroed, verified here
 * LOCAL (a proxy's own health check) and UNSPEC carry no client: the socket's address stands.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ProxyHeaderError } from '../errors.js';
import { crc32c } from './crc32c.js';

/** Which header versions a trusted proxy may send. */
export type ProxyMode = 'v1' | 'v2' | 'any';

/** One v2 type-length-value extension, as sent. */
export interface ProxyTlv {
  /** PP2_TYPE_*: 0x01 ALPN, 0x02 AUTHORITY, 0x03 CRC32C, 0x04 NOOP, 0x05 UNIQUE_ID, 0x20 SSL, 0x30 NETNS, ... */
  type: number;
  value: Buffer;
}

/** An address and port named by a header (a UNIX socket path with port 0). */
export interface ProxyEndpoint {
  address: string;
  port: number;
}

/** What a PROXY header says (ctx.proxy, connection.proxy). */
export interface ProxyHeader {
  version: 1 | 2;
  /** 'local': the proxy speaks for itself (health check); no client is named. */
  command: 'proxy' | 'local';
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown';
  /** The real client; null for LOCAL, UNKNOWN and UNSPEC. UNIX paths have port 0. */
  source: ProxyEndpoint | null;
  /** The address the client connected to (the proxy's frontend); null as source. */
  destination: ProxyEndpoint | null;
  /** v2 TLVs in wire order (the CRC32C one included, already verified); [] for v1. */
  tlvs: ProxyTlv[];
}

/** What ProxyHeaderDecoder.push() returns once the header is whole. */
export interface ProxyDecodeResult {
  header: ProxyHeader;
  /** Bytes that followed the header in the input: the client's stream, unchanged. */
  rest: Buffer;
}

export const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The spec's bound on a v1 line, CRLF included. */
export const V1_MAX_BYTES = 107;
const V2_FIXED = 16;
/**
 * The bound on a v2 header, signature to last TLV. The length field allows 64 KiB;
 * real proxies send the addresses plus a few TLVs (HAProxy's SSL ones are the
 * largest, a few hundred bytes): a bigger header is refused before it is buffered.
 */
export const V2_MAX_BYTES = 4096;
const TLV_CRC32C = 0x03;
const ADDRESS_BYTES: Record<number, number> = { 0x1: 12, 0x2: 36, 0x3: 216 };
const UNIX_PATH_BYTES = 108;

const invalid = (message: string): ProxyHeaderError => new ProxyHeaderError('SHOAL_PROXY_HEADER_INVALID', message);

/** Does `bytes` start like `prefix` as far as both go? */
function agrees(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * For a peer that may not send a header: do these first bytes begin one?
 * 'maybe' while they are a strict prefix of a v1 prefix or v2 signature.
 */
export function sniffProxyHeader(bytes: Uint8Array): 'yes' | 'no' | 'maybe' {
  for (const sig of [V1_PREFIX, V2_SIGNATURE]) {
    if (agrees(bytes, sig)) return bytes.length >= sig.length ? 'yes' : 'maybe';
  }
  return 'no';
}

/**
 * Incremental decoder of one header: push() bytes as they arrive, split at any
 * offset; it returns null until the header is whole, then the header and the
 * rest. Throws ProxyHeaderError (SHOAL_PROXY_HEADER_INVALID) as soon as the bytes
 * cannot be a header the mode accepts; never buffers more than the header bound.
 */
export class ProxyHeaderDecoder {
  readonly #mode: ProxyMode;
  #buf: Buffer | null = null;
  #done = false;

  constructor(mode: ProxyMode) {
    if (mode !== 'v1' && mode !== 'v2' && mode !== 'any') throw new TypeError(`mode must be 'v1', 'v2' or 'any' (got ${String(mode)})`);
    this.#mode = mode;
  }

  /** Bytes held while the header is incomplete. */
  get buffered(): number {
    return this.#buf?.length ?? 0;
  }

  /** Feed the next bytes; returns the header and the bytes after it once it is whole, else null (throws ProxyHeaderError). */
  push(chunk: Buffer): ProxyDecodeResult | null {
    if (this.#done) throw new Error('ProxyHeaderDecoder: push() after the header was decoded');
    const buf = this.#buf === null ? chunk : Buffer.concat([this.#buf, chunk]);
    const result = this.#decode(buf);
    if (result === null) {
      // Copy: a view would pin the socket's whole chunk while we wait.
      this.#buf = buf === chunk ? Buffer.from(chunk) : buf;
      return null;
    }
    this.#done = true;
    this.#buf = null;
    return result;
  }

  #decode(buf: Buffer): ProxyDecodeResult | null {
    const mode = this.#mode;
    const v1 = mode !== 'v2' && agrees(buf, V1_PREFIX);
    const v2 = mode !== 'v1' && agrees(buf, V2_SIGNATURE);
    if (!v1 && !v2) {
      const want = mode === 'v1' ? 'a PROXY v1 line' : mode === 'v2' ? 'the PROXY v2 signature' : 'a PROXY v1 line or v2 signature';
      throw invalid(`expected ${want}, got ${printable(buf.subarray(0, 16))}`);
    }
    if (v1 && buf.length >= V1_PREFIX.length) return decodeV1(buf);
    if (v2 && buf.length >= V2_SIGNATURE.length) return decodeV2(buf);
    return null; // a prefix of one of them so far
  }
}

function decodeV1(buf: Buffer): ProxyDecodeResult | null {
  const scan = Math.min(buf.length, V1_MAX_BYTES);
  let cr = -1;
  for (let i = V1_PREFIX.length; i < scan; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      cr = i;
      break;
    }
    if (c === 0x0a || c < 0x20 || c > 0x7e) throw invalid(`PROXY v1: byte 0x${c.toString(16).padStart(2, '0')} at offset ${i}`);
  }
  if (cr === -1) {
    if (buf.length >= V1_MAX_BYTES) throw invalid(`PROXY v1: no CRLF within ${V1_MAX_BYTES} bytes`);
    return null;
  }
  if (cr + 1 >= buf.length) return null; // the LF has not arrived
  if (buf[cr + 1] !== 0x0a) throw invalid(`PROXY v1: CR at offset ${cr} not followed by LF`);
  const line = buf.toString('latin1', 0, cr);
  const parts = line.split(' ');
  const rest = buf.subarray(cr + 2);
  const proto = parts[1];
  if (proto === 'UNKNOWN') {
    return { header: { version: 1, command: 'proxy', family: 'unknown', source: null, destination: null, tlvs: [] }, rest };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') throw invalid(`PROXY v1: protocol must be TCP4, TCP6 or UNKNOWN (got ${JSON.stringify(proto)})`);
  if (parts.length !== 6) throw invalid(`PROXY v1: expected "PROXY ${proto} src dst sport dport" (got ${JSON.stringify(line)})`);
  const isIp = proto === 'TCP4' ? isIPv4 : isIPv6;
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  if (!isIp(src) || !isIp(dst)) throw invalid(`PROXY v1: ${proto} addresses expected (got ${JSON.stringify(src)} ${JSON.stringify(dst)})`);
  return {
    header: {
      version: 1,
      command: 'proxy',
      family: proto === 'TCP4' ? 'tcp4' : 'tcp6',
      source: { address: src, port: v1Port(sport) },
      destination: { address: dst, port: v1Port(dport) },
      tlvs: [],
    },
    rest,
  };
}

/** A decimal port 0..65535 without leading zeros. */
function v1Port(text: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text) || Number(text) > 65535) throw invalid(`PROXY v1: port must be 0..65535 (got ${JSON.stringify(text)})`);
  return Number(text);
}

function decodeV2(buf: Buffer): ProxyDecodeResult | null {
  if (buf.length < V2_FIXED) {
    // Judge the version and command byte as soon as it is here.
    if (buf.length > 12) checkVersionCommand(buf[12]!);
    return null;
  }
  const command = checkVersionCommand(buf[12]!);
  const famByte = buf[13]!;
  const family = famByte >> 4;
  const protocol = famByte & 0x0f;
  if (family > 3) throw invalid(`PROXY v2: unknown address family ${family}`);
  if (protocol > 2) throw invalid(`PROXY v2: unknown transport protocol ${protocol}`);
  const length = buf.readUInt16BE(14);
  const total = V2_FIXED + length;
  if (total > V2_MAX_BYTES) throw invalid(`PROXY v2: header of ${total} bytes exceeds the maximum of ${V2_MAX_BYTES}`);
  if (buf.length < total) return null;
  const rest = buf.subarray(total);
  const header: ProxyHeader = { version: 2, command, family: 'unknown', source: null, destination: null, tlvs: [] };
  // LOCAL: "the receiver must use the real connection endpoints and discard the protocol block".
  if (command === 'local') return { header, rest };
  let at = V2_FIXED;
  if (family !== 0) {
    const need = ADDRESS_BYTES[family]!;
    if (length < need) throw invalid(`PROXY v2: family ${family} needs ${need} address bytes, the header has ${length}`);
    readAddresses(buf, family, header);
    at += need;
  } else {
    // UNSPEC: nothing is said about the client; whatever sits in the block is skipped.
    return { header, rest };
  }
  let crcAt = -1;
  while (at < total) {
    if (total - at < 3) throw invalid(`PROXY v2: ${total - at} stray bytes after the last TLV`);
    const type = buf[at]!;
    const len = buf.readUInt16BE(at + 1);
    if (at + 3 + len > total) throw invalid(`PROXY v2: TLV 0x${type.toString(16)} of ${len} bytes overruns the header`);
    if (type === TLV_CRC32C) {
      if (len !== 4) throw invalid(`PROXY v2: CRC32C TLV of ${len} bytes (must be 4)`);
      crcAt = at + 3;
    }
    header.tlvs.push({ type, value: Buffer.from(buf.subarray(at + 3, at + 3 + len)) });
    at += 3 + len;
  }
  if (crcAt !== -1) {
    const copy = Buffer.from(buf.subarray(0, total));
    const want = copy.readUInt32BE(crcAt);
    copy.fill(0, crcAt, crcAt + 4);
    const got = crc32c(copy);
    if (got !== want) throw invalid(`PROXY v2: CRC32C mismatch (header says 0x${want.toString(16)}, bytes give 0x${got.toString(16)})`);
  }
  return { header, rest };
}

function checkVersionCommand(b: number): 'proxy' | 'local' {
  if (b >> 4 !== 2) throw invalid(`PROXY v2: version ${b >> 4} (must be 2)`);
  const cmd = b & 0x0f;
  if (cmd > 1) throw invalid(`PROXY v2: unknown command ${cmd}`);
  return cmd === 0 ? 'local' : 'proxy';
}

function readAddresses(buf: Buffer, family: number, header: ProxyHeader): void {
  const a = V2_FIXED;
  if (family === 1) {
    header.family = 'tcp4';
    header.source = { address: ipv4(buf, a), port: buf.readUInt16BE(a + 8) };
    header.destination = { address: ipv4(buf, a + 4), port: buf.readUInt16BE(a + 10) };
  } else if (family === 2) {
    header.family = 'tcp6';
    header.source = { address: ipv6(buf, a), port: buf.readUInt16BE(a + 32) };
    header.destination = { address: ipv6(buf, a + 16), port: buf.readUInt16BE(a + 34) };
  } else {
    header.family = 'unix';
    header.source = { address: unixPath(buf, a), port: 0 };
    header.destination = { address: unixPath(buf, a + UNIX_PATH_BYTES), port: 0 };
  }
}

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** The text net.Socket reports (libuv's inet_ntop): lower case, the first longest run of 2+ zero groups as "::". */
function ipv6(b: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(at + i * 2));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) as libuv's inet_ntop writes them.
  if (bestAt === 0 && bestLen === 6) return `::${ipv4(b, at + 12)}`;
  if (bestAt === 0 && bestLen === 5 && groups[5] === 0xffff) return `::ffff:${ipv4(b, at + 12)}`;
  if (bestAt === -1) return hex(groups);
  return `${hex(groups.slice(0, bestAt))}::${hex(groups.slice(bestAt + bestLen))}`;
}

function unixPath(b: Buffer, at: number): string {
  const end = b.indexOf(0, at);
  return b.toString('utf8', at, end === -1 || end > at + UNIX_PATH_BYTES ? at + UNIX_PATH_BYTES : end);
}

function printable(b: Uint8Array): string {
  return JSON.stringify(Buffer.from(b).toString('latin1'));
}

// ---- writers (the client side: tests, a future shoal client behind nothing) -------

/** A v1 line naming `source` and `destination` (TCP4 or TCP6 by the address), or UNKNOWN when either is null. */
export function encodeProxyV1(source: ProxyEndpoint | null, destination: ProxyEndpoint | null): Buffer {
  if (source === null || destination === null) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const proto = isIPv4(source.address) ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`, 'latin1');
}

/** What encodeProxyV2() writes: PROXY (default) or LOCAL, the addresses, TLVs, a CRC32C. */
export interface EncodeV2Options {
  command?: 'proxy' | 'local';
  source?: ProxyEndpoint | null;
  destination?: ProxyEndpoint | null;
  family?: 'tcp4' | 'tcp6' | 'unix';
  tlvs?: ProxyTlv[];
  /** Append a CRC32C TLV computed over the result. */
  crc?: boolean;
}

/** A v2 header (STREAM transport). */
export function encodeProxyV2(o: EncodeV2Options): Buffer {
  const command = o.command ?? 'proxy';
  const src = o.source ?? null;
  const dst = o.destination ?? null;
  let famNibble = 0;
  let addr = Buffer.alloc(0);
  if (src !== null && dst !== null) {
    const family = o.family ?? (isIPv4(src.address) ? 'tcp4' : 'tcp6');
    if (family === 'tcp4') {
      famNibble = 1;
      addr = Buffer.alloc(12);
      Buffer.from(src.address.split('.').map(Number)).copy(addr, 0);
      Buffer.from(dst.address.split('.').map(Number)).copy(addr, 4);
      addr.writeUInt16BE(src.port, 8);
      addr.writeUInt16BE(dst.port, 10);
    } else if (family === 'tcp6') {
      famNibble = 2;
      addr = Buffer.alloc(36);
      ipv6Bytes(src.address).copy(addr, 0);
      ipv6Bytes(dst.address).copy(addr, 16);
      addr.writeUInt16BE(src.port, 32);
      addr.writeUInt16BE(dst.port, 34);
    } else {
      famNibble = 3;
      addr = Buffer.alloc(216);
      addr.write(src.address, 0, UNIX_PATH_BYTES - 1, 'utf8');
      addr.write(dst.address, UNIX_PATH_BYTES, UNIX_PATH_BYTES - 1, 'utf8');
    }
  }
  const tlvs = [...(o.tlvs ?? [])];
  if (o.crc) tlvs.push({ type: TLV_CRC32C, value: Buffer.alloc(4) });
  const tlvBytes = Buffer.concat(
    tlvs.map((t) => {
      const h = Buffer.alloc(3);
      h[0] = t.type;
      h.writeUInt16BE(t.value.length, 1);
      return Buffer.concat([h, t.value]);
    }),
  );
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | (command === 'local' ? 0 : 1);
  fixed[1] = (famNibble << 4) | (famNibble === 0 ? 0 : 1);
  fixed.writeUInt16BE(addr.length + tlvBytes.length, 2);
  const out = Buffer.concat([V2_SIGNATURE, fixed, addr, tlvBytes]);
  if (o.crc) out.writeUInt32BE(crc32c(out), out.length - 4);
  return out;
}

/** 16 bytes of an IPv6 address in any valid text form (incl. ::ffff:a.b.c.d). */
function ipv6Bytes(text: string): Buffer {
  // A trailing dotted quad becomes two hex groups, then "::" expands to the missing zeros.
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  const s = m ? `${m[1]}${((+m[2]! << 8) | +m[3]!).toString(16)}:${((+m[4]! << 8) | +m[5]!).toString(16)}` : text;
  const [head, back] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const b = back === undefined ? null : back ? back.split(':') : [];
  const groups = b === null ? h : [...h, ...Array<string>(8 - h.length - b.length).fill('0'), ...b];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
