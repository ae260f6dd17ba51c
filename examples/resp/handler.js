// A Redis-compatible server on shoal: strings with expiry, lists, and one CPU-bound command.
// Start: shoal start --framing resp --handler examples/resp/handler.js
// (the codec and the affinity come from this module's exports; README.md says why).
//
//   redis-cli -p 8000 set greeting hello      redis-benchmark -p 8000 -P 16 -t set,get,incr -q
import { MAIN_THREAD, commandIs, resp } from 'shoal';
import { sha256Chain } from '../bench-protocol/sha256.js';
import { Deque } from './deque.js';
import { parseInteger } from './integers.js';

/** The handler gets each command as Buffer[] and returns a RESP value. */
export const codec = 'resp';

/**
 * Runs on the main thread for every command, on the frame as cut (no parsing): the
 * keyspace commands run on the main thread, serially, in arrival order, like one Redis
 * instance (its keyspace lives in its I/O thread too); HASHCHAIN touches no key and runs
 * on any free worker. README.md says why, with the figures of the other designs.
 */
export function affinityKey(frame) {
  return commandIs(frame, 'hashchain') ? null : MAIN_THREAD;
}

// ---- the keyspace (one per thread that loads this module; only the main thread's is used) ----

/** key (latin1: one char per byte, so binary keys stay exact) -> Buffer | number | Deque. */
const store = new Map();
/** key -> ms since the epoch when it expires (keys without a TTL are absent). */
const expires = new Map();

const WRONGTYPE = resp.error('WRONGTYPE Operation against a key holding the wrong kind of value');
const NOT_INTEGER = resp.error('ERR value is not an integer or out of range');
const SYNTAX = resp.error('ERR syntax error');
const OVERFLOW = resp.error('ERR increment or decrement would overflow');
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const keyOf = (b) => b.toString('latin1');
/** A copy: the argument is a view of the frame, valid only while the command runs. */
const own = (b) => Buffer.from(b);

function lookup(key) {
  // Most keyspaces hold no TTL at all: then one map is read per command, not two (Redis checks too).
  if (expires.size !== 0) {
    const at = expires.get(key);
    if (at !== undefined && at <= Date.now()) {
      expires.delete(key);
      store.delete(key);
      return undefined;
    }
  }
  return store.get(key);
}

function remove(key) {
  if (expires.size !== 0) expires.delete(key);
  return store.delete(key);
}

/** A string value as bytes (integers are kept as numbers, like Redis's int encoding). */
const asBytes = (v) => (typeof v === 'number' ? Buffer.from(String(v)) : v);

function getString(key) {
  const v = lookup(key);
  if (v === undefined) return null;
  if (v instanceof Deque) return WRONGTYPE;
  return asBytes(v);
}

function incrBy(key, delta) {
  const v = lookup(key);
  if (v instanceof Deque) return WRONGTYPE;
  let current;
  if (v === undefined) current = 0;
  else if (typeof v === 'number') current = v;
  else {
    const parsed = parseInteger(v);
    if (parsed === null) return NOT_INTEGER;
    current = parsed;
  }
  if (typeof current === 'number' && typeof delta === 'number') {
    const sum = current + delta;
    if (Number.isSafeInteger(sum)) {
      store.set(key, sum);
      return sum;
    }
  }
  const sum = BigInt(current) + BigInt(delta);
  if (sum < INT64_MIN || sum > INT64_MAX) return OVERFLOW;
  store.set(key, Number.isSafeInteger(Number(sum)) ? Number(sum) : Buffer.from(sum.toString()));
  return sum;
}

function list(key, create) {
  const v = lookup(key);
  if (v === undefined) {
    if (!create) return null;
    const d = new Deque();
    store.set(key, d);
    return d;
  }
  return v instanceof Deque ? v : WRONGTYPE;
}

/** LPOP/RPOP with an optional count (Redis 6.2). */
function pop(args, fromLeft) {
  if (args.length > 3) return arity(args[0]);
  let count = null;
  if (args.length === 3) {
    count = parseInteger(args[2]);
    if (count === null || count < 0) return resp.error('ERR value is out of range, must be positive');
    count = Number(count);
  }
  const key = keyOf(args[1]);
  const d = list(key, false);
  if (d === null) return count === null ? null : resp.nullArray;
  if (d === WRONGTYPE) return d;
  const take = () => (fromLeft ? d.shift() : d.pop());
  let out;
  if (count === null) out = take();
  else {
    out = [];
    for (let i = 0; i < count && d.length > 0; i++) out.push(take());
  }
  if (d.length === 0) remove(key);
  return out;
}

function setCommand(args) {
  const key = keyOf(args[1]);
  let nx = false;
  let xx = false;
  let ttl = -1;
  for (let i = 3; i < args.length; i++) {
    const opt = args[i].toString('latin1').toUpperCase();
    if (opt === 'NX' && !xx) nx = true;
    else if (opt === 'XX' && !nx) xx = true;
    else if ((opt === 'EX' || opt === 'PX') && ttl < 0 && i + 1 < args.length) {
      const n = parseInteger(args[++i]);
      if (n === null) return NOT_INTEGER;
      if (n <= 0) return resp.error("ERR invalid expire time in 'set' command");
      ttl = Number(n) * (opt === 'EX' ? 1000 : 1);
    } else if (opt === 'KEEPTTL' && ttl < 0) ttl = -2;
    else return SYNTAX;
  }
  // Only NX, XX and KEEPTTL care whether the key is there (lookup() also drops it if expired).
  if (nx || xx || ttl === -2) {
    const exists = lookup(key) !== undefined;
    if ((nx && exists) || (xx && !exists)) return null;
  }
  store.set(key, own(args[2]));
  if (ttl > 0) expires.set(key, Date.now() + ttl);
  else if (ttl !== -2 && expires.size !== 0) expires.delete(key);
  return resp.ok;
}

function expireCommand(args, unit) {
  if (args.length !== 3) return arity(args[0]);
  const n = parseInteger(args[2]);
  if (n === null) return NOT_INTEGER;
  const key = keyOf(args[1]);
  if (lookup(key) === undefined) return 0;
  if (n <= 0) remove(key);
  else expires.set(key, Date.now() + Number(n) * unit);
  return 1;
}

function ttlCommand(args, unit) {
  const key = keyOf(args[1]);
  if (lookup(key) === undefined) return -2;
  const at = expires.get(key);
  if (at === undefined) return -1;
  return Math.max(0, Math.round((at - Date.now()) / unit));
}

/** LRANGE's indexes: negative ones count from the end, out-of-range ones are clamped. */
function lrange(args) {
  const start = parseInteger(args[2]);
  const stop = parseInteger(args[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const d = list(keyOf(args[1]), false);
  if (d === null) return [];
  if (d === WRONGTYPE) return d;
  const n = d.length;
  let from = Number(start) < 0 ? n + Number(start) : Number(start);
  let to = Number(stop) < 0 ? n + Number(stop) : Number(stop);
  if (from < 0) from = 0;
  if (to >= n) to = n - 1;
  const out = [];
  for (let i = from; i <= to; i++) out.push(d.at(i));
  return out;
}

function liveKeys() {
  const now = Date.now();
  for (const [key, at] of expires) if (at <= now) remove(key);
  return store.size;
}

// ---- what clients send when they connect ---------------------------------------

const INFO = [
  '# Server',
  'redis_version:7.0.0',
  'redis_mode:standalone',
  'server_name:shoal',
  '',
  '# Persistence',
  'loading:0',
  '',
].join('\r\n');

/** CONFIG GET: what redis-benchmark asks at start (save, appendonly). */
const CONFIG = new Map([
  ['save', ''],
  ['appendonly', 'no'],
  ['databases', '1'],
]);

function configCommand(args) {
  const sub = args[1].toString('latin1').toUpperCase();
  if (sub !== 'GET') return resp.error(`ERR unknown subcommand '${args[1].toString('latin1')}'. Try CONFIG HELP.`);
  if (args.length < 3) return arity(args[0], 'config|get');
  const out = [];
  for (const pattern of args.slice(2)) {
    const p = pattern.toString('latin1').toLowerCase();
    for (const [name, value] of CONFIG) if (p === '*' || p === name) out.push(name, value);
  }
  return out;
}

function helloCommand(args, ctx) {
  if (args.length > 1) {
    const version = parseInteger(args[1]);
    if (version === null) return resp.error('ERR Protocol version is not an integer or out of range');
    if (version !== 2n && version !== 2) return resp.error('NOPROTO unsupported protocol version');
  }
  return ['server', 'redis', 'version', '7.0.0', 'proto', 2, 'id', ctx.connectionId, 'mode', 'standalone', 'role', 'master', 'modules', []];
}

function clientCommand(args, ctx) {
  const sub = args[1].toString('latin1').toUpperCase();
  if (sub === 'SETNAME' || sub === 'SETINFO') return resp.ok;
  if (sub === 'GETNAME') return null;
  if (sub === 'ID') return ctx.connectionId;
  return resp.error(`ERR unknown subcommand '${args[1].toString('latin1')}'. Try CLIENT HELP.`);
}

// ---- the command table -----------------------------------------------------------

/**
 * name -> [arity, run]: arity as in Redis's command table, the argument count with the
 * name; negative means "at least".
 */
const COMMANDS = new Map([
  ['ping', [-1, (a) => (a.length === 1 ? resp.pong : a.length === 2 ? a[1] : arity(a[0]))]],
  ['echo', [2, (a) => a[1]]],
  ['set', [-3, setCommand]],
  ['get', [2, (a) => getString(keyOf(a[1]))]],
  ['del', [-2, (a) => a.slice(1).reduce((n, k) => n + (lookup(keyOf(k)) !== undefined && remove(keyOf(k)) ? 1 : 0), 0)]],
  ['exists', [-2, (a) => a.slice(1).reduce((n, k) => n + (lookup(keyOf(k)) !== undefined ? 1 : 0), 0)]],
  ['incr', [2, (a) => incrBy(keyOf(a[1]), 1)]],
  ['decr', [2, (a) => incrBy(keyOf(a[1]), -1)]],
  ['incrby', [3, (a) => withInteger(a[2], (n) => incrBy(keyOf(a[1]), n))]],
  ['decrby', [3, (a) => withInteger(a[2], (n) => (n === INT64_MIN ? OVERFLOW : incrBy(keyOf(a[1]), typeof n === 'number' ? -n : -n)))]],
  ['mget', [-2, (a) => a.slice(1).map((k) => { const v = getString(keyOf(k)); return v === WRONGTYPE ? null : v; })]],
  ['mset', [-3, (a) => {
    if (a.length % 2 === 0) return arity(a[0]);
    for (let i = 1; i < a.length; i += 2) {
      const key = keyOf(a[i]);
      store.set(key, own(a[i + 1]));
      expires.delete(key);
    }
    return resp.ok;
  }]],
  ['strlen', [2, (a) => { const v = getString(keyOf(a[1])); return v === null ? 0 : v === WRONGTYPE ? v : v.length; }]],
  ['append', [3, (a) => {
    const key = keyOf(a[1]);
    const v = getString(key);
    if (v === WRONGTYPE) return v;
    const next = v === null ? own(a[2]) : Buffer.concat([v, a[2]]);
    store.set(key, next);
    return next.length;
  }]],
  ['expire', [-3, (a) => expireCommand(a, 1000)]],
  ['pexpire', [-3, (a) => expireCommand(a, 1)]],
  ['ttl', [2, (a) => ttlCommand(a, 1000)]],
  ['pttl', [2, (a) => ttlCommand(a, 1)]],
  ['type', [2, (a) => { const v = lookup(keyOf(a[1])); return resp.simple(v === undefined ? 'none' : v instanceof Deque ? 'list' : 'string'); }]],
  ['lpush', [-3, (a) => pushCommand(a, true)]],
  ['rpush', [-3, (a) => pushCommand(a, false)]],
  ['lpop', [-2, (a) => pop(a, true)]],
  ['rpop', [-2, (a) => pop(a, false)]],
  ['llen', [2, (a) => { const d = list(keyOf(a[1]), false); return d === null ? 0 : d === WRONGTYPE ? d : d.length; }]],
  ['lrange', [4, lrange]],
  ['dbsize', [1, () => liveKeys()]],
  ['flushall', [-1, () => { store.clear(); expires.clear(); return resp.ok; }]],
  ['flushdb', [-1, () => { store.clear(); expires.clear(); return resp.ok; }]],
  ['select', [2, (a) => (a[1].toString('latin1') === '0' ? resp.ok : resp.error('ERR DB index is out of range'))]],
  ['config', [-2, configCommand]],
  ['command', [-1, (a) => (a.length > 1 && a[1].toString('latin1').toUpperCase() === 'COUNT' ? COMMANDS.size : [])]],
  ['hello', [-1, helloCommand]],
  ['info', [-1, () => INFO]],
  ['client', [-2, clientCommand]],
  ['quit', [-1, () => resp.ok]],
  // The CPU-bound command: HASHCHAIN <rounds> <data> -> hex of SHA-256 applied `rounds` times.
  ['hashchain', [3, hashChain]],
]);

/** Most rounds HASHCHAIN takes (~0.6 s of CPU here): one command must not hold a worker for long. */
const MAX_ROUNDS = 1_000_000;

function hashChain(a) {
  const rounds = parseInteger(a[1]);
  if (rounds === null || rounds < 1 || rounds > MAX_ROUNDS) return resp.error(`ERR rounds must be an integer from 1 to ${MAX_ROUNDS}`);
  return Buffer.from(sha256Chain(a[2], Number(rounds))).toString('hex');
}

function pushCommand(a, left) {
  const d = list(keyOf(a[1]), true);
  if (d === WRONGTYPE) return d;
  for (let i = 2; i < a.length; i++) {
    if (left) d.unshift(own(a[i]));
    else d.push(own(a[i]));
  }
  return d.length;
}

function withInteger(arg, run) {
  const n = parseInteger(arg);
  return n === null ? NOT_INTEGER : run(n);
}

function arity(name, full) {
  return resp.error(`ERR wrong number of arguments for '${full ?? name.toString('latin1').toLowerCase()}' command`);
}

/** Redis's reply to an unknown command: the name and the first arguments, 128 bytes of each at most. */
function unknown(args) {
  const quote = (b) => `'${b.subarray(0, 128).toString('latin1')}' `;
  return resp.error(`ERR unknown command ${quote(args[0]).trimEnd()}, with args beginning with: ${args.slice(1).map(quote).join('')}`);
}

/**
 * A command name as a number made from its bytes, ASCII case folded: 5 bits a letter
 * (1-26), so GET, get and Get are one number and no string is made per command. -1 when
 * the name is not 1 to 10 letters: no command is named so (they would be unknown anyway).
 */
function nameCode(name) {
  const n = name.length;
  if (n === 0 || n > 10) return -1;
  let code = 0;
  for (let i = 0; i < n; i++) {
    const letter = (name[i] | 0x20) - 0x60;
    if (letter < 1 || letter > 26) return -1;
    code = code * 32 + letter;
  }
  return code;
}

/** nameCode -> COMMANDS entry: one lookup of a number per command. */
const BY_CODE = new Map();
for (const [name, entry] of COMMANDS) {
  const code = nameCode(Buffer.from(name));
  if (code < 0) throw new Error(`command name '${name}' is not 1 to 10 letters: nameCode cannot find it`);
  BY_CODE.set(code, entry);
}

function entryOf(name) {
  const code = nameCode(name);
  return code < 0 ? null : (BY_CODE.get(code) ?? null);
}

export default function redis(args, ctx) {
  if (args.length === 0) return undefined;
  const entry = entryOf(args[0]);
  if (entry === null) return unknown(args);
  const [n, run] = entry;
  if (n >= 0 ? args.length !== n : args.length < -n) return arity(args[0]);
  return run(args, ctx);
}
