/**
 * The RESP floor: a plain Node `net` server answering what redis-benchmark's default tests
 * send (PING inline and as an array, SET, GET, INCR, LPUSH, LPOP) from one Map, with no
 * framework at all. bench:resp runs it beside shoal and redis-server so shoal's figures
 * have a Node-only reference: what one Node thread can do with a socket per client.
 *
 *   node dist/bench/net-resp-server.js [--host H] [--port P]
 *
 * Logs `{"msg":"listening","port":P}` on stdout like `shoal start`; SIGTERM/SIGINT close it.
 * It checks nothing it does not need (no arity, no types, no limits): a reference for
 * speed, not a server. Anything it cannot parse closes the connection.
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } }, strict: true });

const OK = Buffer.from('+OK\r\n');
const PONG = Buffer.from('+PONG\r\n');
const NIL = Buffer.from('$-1\r\n');
const EMPTY = Buffer.from('*0\r\n');
const CRLF = Buffer.from('\r\n');
const store = new Map<string, Buffer | number | Buffer[]>();

const integer = (n: number): Buffer => Buffer.from(`:${n}\r\n`);
const bulk = (out: Buffer[], v: Buffer): void => {
  out.push(Buffer.from(`$${v.length}\r\n`), v, CRLF);
};

/** Parses one command at `at`: its arguments and the offset after it, or null if it is not all in yet. */
function parse(buf: Buffer, at: number): { args: Buffer[]; end: number } | null {
  if (buf[at] !== 0x2a) {
    const eol = buf.indexOf(10, at);
    if (eol < 0) return null;
    const line = buf.toString('latin1', at, buf[eol - 1] === 13 ? eol - 1 : eol).trim();
    return { args: line === '' ? [] : line.split(/ +/).map((w: string) => Buffer.from(w, 'latin1')), end: eol + 1 };
  }
  let eol = buf.indexOf(13, at);
  if (eol < 0 || eol + 1 >= buf.length) return null;
  const n = Number(buf.toString('latin1', at + 1, eol));
  let i = eol + 2;
  const args: Buffer[] = [];
  for (let k = 0; k < n; k++) {
    eol = buf.indexOf(13, i);
    if (eol < 0 || eol + 1 >= buf.length) return null;
    const len = Number(buf.toString('latin1', i + 1, eol));
    i = eol + 2;
    if (i + len + 2 > buf.length) return null;
    args.push(buf.subarray(i, i + len));
    i += len + 2;
  }
  return { args, end: i };
}

function run(args: Buffer[], out: Buffer[]): void {
  if (args.length === 0) return;
  const name = args[0]!.toString('latin1').toLowerCase();
  const key = args.length > 1 ? args[1]!.toString('latin1') : '';
  switch (name) {
    case 'ping':
      return void out.push(PONG);
    case 'set':
      store.set(key, Buffer.from(args[2]!));
      return void out.push(OK);
    case 'get': {
      const v = store.get(key);
      if (v === undefined) return void out.push(NIL);
      return bulk(out, typeof v === 'number' ? Buffer.from(String(v)) : (v as Buffer));
    }
    case 'incr': {
      const v = store.get(key);
      const n = (typeof v === 'number' ? v : v === undefined ? 0 : Number(String(v))) + 1;
      store.set(key, n);
      return void out.push(integer(n));
    }
    case 'lpush': {
      let list = store.get(key) as Buffer[] | undefined;
      if (list === undefined) store.set(key, (list = []));
      for (let k = 2; k < args.length; k++) list.push(Buffer.from(args[k]!));
      return void out.push(integer(list.length));
    }
    case 'lpop': {
      const list = store.get(key) as Buffer[] | undefined;
      const v = list?.pop();
      return v === undefined ? void out.push(NIL) : bulk(out, v);
    }
    case 'flushall':
      store.clear();
      return void out.push(OK);
    case 'config': // CONFIG GET <name> (redis-benchmark asks for save and appendonly): an empty value
      out.push(Buffer.from(`*2\r\n$${key === 'get' ? args[2]!.length : 0}\r\n`), key === 'get' ? args[2]! : Buffer.alloc(0), CRLF);
      return bulk(out, Buffer.alloc(0));
    default:
      return void out.push(EMPTY);
  }
}

const server = createServer({ noDelay: true }, (socket) => {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const out: Buffer[] = [];
    let at = 0;
    for (let cmd = parse(buf, at); cmd !== null; cmd = at < buf.length ? parse(buf, at) : null) {
      run(cmd.args, out);
      at = cmd.end;
    }
    pending = at === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at));
    if (pending.length > 1 << 20) return socket.destroy();
    // One write per read, as a server that coalesces its replies does.
    if (out.length > 0) socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  });
});
server.listen(Number(values.port ?? 0), values.host ?? '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => server.close(() => process.exit(0)));
