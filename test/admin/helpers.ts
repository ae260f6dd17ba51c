import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { ShoalServer } from '../../dist/src/index.js';

export const ADMIN_FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** GET (or another method) on the admin server; the whole body as text. Bounded by `timeout`. */
export function get(port: number, path: string, method = 'GET', timeout = 20_000): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, timeout }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out after ${timeout} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * GET a heap snapshot and read only until its header is complete, then hang up:
 * returns the parsed `snapshot` header object and how many bytes were read.
 */
export function heapHeader(port: number, path: string, timeout = 20_000): Promise<{ status: number; header: any; bytesRead: number; body?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout }, (res) => {
      let text = '';
      let bytesRead = 0;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        bytesRead += Buffer.byteLength(c);
        if (res.statusCode !== 200) return;
        const at = text.indexOf(',"nodes":[');
        const at2 = at >= 0 ? at : text.indexOf(',\n"nodes":[');
        if (at2 < 0) return;
        try {
          resolve({ status: 200, header: JSON.parse(`${text.slice(0, at2)}}`), bytesRead });
        } catch (err) {
          reject(err);
        }
        req.destroy();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, header: null, bytesRead, body: text }));
      res.on('error', () => {});
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out after ${timeout} ms`)));
    req.on('error', (err) => reject(err));
    req.end();
  });
}

/** Prometheus text -> samples, keyed by `name{label="v",...}` with labels sorted. */
export function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.set(key(m[1]!, labels), Number(m[3]));
  }
  return out;
}

export function key(name: string, labels: Record<string, string> = {}): string {
  const l = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',');
  return l ? `${name}{${l}}` : name;
}

/** One sample's value; throws naming the sample when it is absent. */
export function sample(m: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const v = m.get(key(name, labels));
  if (v === undefined) throw new Error(`no sample ${key(name, labels)} in the scrape`);
  return v;
}

export async function scrape(port: number): Promise<Map<string, number>> {
  const r = await get(port, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.body}`);
  return parseProm(r.body);
}

export function adminPort(server: ShoalServer): number {
  const a = server.admin?.address();
  if (!a) throw new Error('the admin server is not listening');
  return a.port;
}

/** A logger that keeps every line (level, bindings and fields merged) for assertions. */
export interface Line {
  level: string;
  msg: string | undefined;
  [field: string]: unknown;
}
export function captureLogger(lines: Line[] = [], bindings: Record<string, unknown> = {}): any {
  const at = (level: string) => (obj: unknown, msg?: string) => {
    lines.push({ ...bindings, ...(obj as object), level, msg });
  };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more: Record<string, unknown>) => captureLogger(lines, { ...bindings, ...more }),
  };
}
