/**
 * The RESP floor: a plain Node `net` server answering what redis-benchmark's default tests
 * send (PING inline and as an array, SET, GET, INCR, LPUSH, LPOP) from one Map, with no
 * framework at all. bench:resp runs it beside shoal and redis-server so shoal's figures
 * have a Node-only reference: what one Node thread does with a socket per client when it
 * hands each command on as shoal's `resp` codec does (one Buffer view per argument, keys
 * as latin1 strings in a Map).
 *
 *   node dist/bench/net-resp-server.js [--host H] [--port P]
 *
 * Written to be fast, so that it is a floor and not a straw man: headers are read byte by
 * byte (no string per number), the replies of one read are encoded into one buffer and
 * leave in one write, the common replies are encoded once. (Its first version parsed
 * numbers through strings and built each reply with Buffer.concat: it measured 0.28x
 * redis-server on GET, this one 0.50-0.58x on the same machine.)
 *
 * Logs `{"msg":"listening","port":P}` on stdout like `shoal start`; SIGTERM/SIGINT close it.
 * It checks nothing it does not need (no arity, no types, no limits): a reference for
 * speed, not a server. A command it cannot parse closes the connection.
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } }, strict: true });

const CR = 13;
const LF = 10;
const OK = Buffer.from('+OK\r\n');
const PONG = Buffer.from('+PONG\r\n');
const NIL = Buffer.from('$-1\r\n');
const EMPTY_ARRAY = Buffer.from('*0\r\n');
const MAX_PENDING = 1 << 20;
const store = new Map<string, Buffer | number | Buffer[]>();

/** The replies of the read being answered (one buffer, reused; grown when a read needs more). */
let out = Buffer.allocUnsafe(64 * 1024);
let at = 0;

function room(n: number): void {
  if (at + n <= out.length) return;
  const next = Buffer.allocUnsafe(Math.max(2 * out.length, at + n));
  out.copy(next, 0, 0, at);
  out = next;
}
function put(b: Buffer): void {
  room(b.length);
  out.set(b, at);
  at += b.length;
}
/** `<prefix><n>\r\n`, digits written in place. */
function putNumber(prefix: number, n: number): void {
  room(24);
  out[at++] = prefix;
  if (n < 0) {
    out[at++] = 0x2d;
    n = -n;
  }
  let digits = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
  for (let i = at + digits - 1; i >= at; i--) {
    out[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  at += digits;
  out[at++] = CR;
  out[at++] = LF;
}
function putBulk(v: Buffer): void {
  putNumber(0x24, v.length);
  put(v);
  room(2);
  out[at++] = CR;
  out[at++] = LF;
}

/** The CR at or after `i`, before `end`, or -1. */
function findCR(b: Buffer, i: number, end: number): number {
  while (i < end && b[i] !== CR) i++;
  return i < end ? i : -1;
}
/** A non-negative decimal in [s, e), or -1 if it is not one. */
function count(b: Buffer, s: number, e: number): number {
  if (s >= e) return -1;
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
const integerOf = (v: Buffer | number | undefined): number => (typeof v === 'number' ? v : v === undefined ? 0 : Number(v.toString('latin1')));

function run(args: Buffer[]): void {
  if (args.length === 0) return;
  const name = args[0]!.toString('latin1');
  switch (name.length <= 8 ? name.toLowerCase() : '') {
    case 'ping':
      return put(PONG);
    case 'set':
      store.set(args[1]!.toString('latin1'), Buffer.from(args[2]!));
      return put(OK);
    case 'get': {
      const v = store.get(args[1]!.toString('latin1'));
      if (v === undefined) return put(NIL);
      return putBulk(typeof v === 'number' ? Buffer.from(String(v)) : (v as Buffer));
    }
    case 'incr': {
      const key = args[1]!.toString('latin1');
      const n = integerOf(store.get(key) as Buffer | number | undefined) + 1;
      store.set(key, n);
      return putNumber(0x3a, n);
    }
    case 'lpush': {
      // The list's head is the array's end: LPUSH pushes, LPOP pops.
      const key = args[1]!.toString('latin1');
      let list = store.get(key) as Buffer[] | undefined;
      if (list === undefined) store.set(key, (list = []));
      for (let k = 2; k < args.length; k++) list.push(Buffer.from(args[k]!));
      return putNumber(0x3a, list.length);
    }
    case 'lpop': {
      const v = (store.get(args[1]!.toString('latin1')) as Buffer[] | undefined)?.pop();
      return v === undefined ? put(NIL) : putBulk(v);
    }
    case 'flushall':
      store.clear();
      return put(OK);
    case 'config': // CONFIG GET <name> (redis-benchmark asks for save and appendonly): an empty value
      if (args.length < 3) return put(EMPTY_ARRAY);
      put(Buffer.from('*2\r\n'));
      putBulk(args[2]!);
      return putBulk(Buffer.alloc(0));
    default:
      return put(EMPTY_ARRAY);
  }
}

/** Answers every whole command in `b` (into `out`); returns where the first incomplete one starts, or -1 on bad input. */
function answer(b: Buffer): number {
  const end = b.length;
  let p = 0;
  while (p < end) {
    if (b[p] !== 0x2a) {
      // An inline command: words up to the LF.
      const lf = b.indexOf(LF, p);
      if (lf < 0) return p;
      const line = b.toString('latin1', p, b[lf - 1] === CR ? lf - 1 : lf).trim();
      if (line !== '') run(line.split(/ +/).map((w) => Buffer.from(w, 'latin1')));
      p = lf + 1;
      continue;
    }
    let cr = findCR(b, p + 1, end);
    if (cr < 0 || cr + 1 >= end) return p;
    const n = count(b, p + 1, cr);
    if (n < 0) return -1;
    let q = cr + 2;
    const args = new Array<Buffer>(n);
    for (let k = 0; k < n; k++) {
      if (q >= end) return p;
      if (b[q] !== 0x24) return -1;
      cr = findCR(b, q + 1, end);
      if (cr < 0 || cr + 1 >= end) return p;
      const len = count(b, q + 1, cr);
      if (len < 0) return -1;
      q = cr + 2;
      if (q + len + 2 > end) return p;
      args[k] = b.subarray(q, q + len);
      q += len + 2;
    }
    run(args);
    p = q;
  }
  return p;
}

const server = createServer({ noDelay: true }, (socket) => {
  let pending: Buffer | null = null;
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    const b = pending === null ? chunk : Buffer.concat([pending, chunk]);
    at = 0;
    const p = answer(b);
    // One write per read, as a server that coalesces its replies does (a copy: `out` is reused).
    if (at > 0) socket.write(Buffer.from(out.subarray(0, at)));
    if (p < 0) return socket.destroy();
    pending = p === b.length ? null : Buffer.from(b.subarray(p));
    if (pending !== null && pending.length > MAX_PENDING) socket.destroy();
  });
});
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => server.close(() => process.exit(0)));
