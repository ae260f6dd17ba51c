/**
 * A connection's PROXY header on its way to a worker (ctx.proxy): serialized once per
 * connection (cached by the header object) into bytes that travel beside each of its
 * messages, and parsed in the worker only when a handler reads ctx.proxy. Connections
 * without a header pay nothing.
 */
import type { ProxyHeader } from './proxy-protocol.js';

interface Wire {
  v: 1 | 2;
  c: ProxyHeader['command'];
  f: ProxyHeader['family'];
  s: [string, number] | null;
  d: [string, number] | null;
  t: [number, string][];
}

const cache = new WeakMap<ProxyHeader, Buffer>();

/** The header as bytes (the same Buffer for the same header object). */
export function proxyToBytes(h: ProxyHeader): Buffer {
  let b = cache.get(h);
  if (b === undefined) {
    const w: Wire = {
      v: h.version,
      c: h.command,
      f: h.family,
      s: h.source ? [h.source.address, h.source.port] : null,
      d: h.destination ? [h.destination.address, h.destination.port] : null,
      t: h.tlvs.map((t) => [t.type, t.value.toString('base64')]),
    };
    b = Buffer.from(JSON.stringify(w));
    cache.set(h, b);
  }
  return b;
}

export function proxyFromBytes(bytes: Uint8Array): ProxyHeader {
  const w = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')) as Wire;
  return {
    version: w.v,
    command: w.c,
    family: w.f,
    source: w.s ? { address: w.s[0], port: w.s[1] } : null,
    destination: w.d ? { address: w.d[0], port: w.d[1] } : null,
    tlvs: w.t.map(([type, value]) => ({ type, value: Buffer.from(value, 'base64') })),
  };
}
