import { Worker } from 'node:worker_threads';
import { expect } from 'vitest';

/**
 * The canary: a well-behaved client that sends one bench-protocol request
 * (K = 1, a unique payload) every 100 ms while a hostile case runs, and checks
 * that each reply is the right SHA-256 and arrives within 1 s.
 *
 * It runs in its own worker thread, with its own event loop: the attack code in
 * the test's main thread (thousands of sockets, megabytes of writes) must not be
 * able to delay the canary's clock or its reads, so a late reply is the server's
 * doing. A request is sent every interval whether or not earlier ones were
 * answered (a stall shows up as several late replies, not as fewer requests).
 */
export interface CanaryOptions {
  host?: string;
  intervalMs?: number;
  /** A reply later than this is a failure. */
  deadlineMs?: number;
  /** withCanary keeps the canary running at least this long (ms), so a quick case still gets ~10 probes. */
  minMs?: number;
}

export interface CanaryReport {
  sent: number;
  answered: number;
  /** The first 20 failures, as text: late, wrong, or never answered (connection lost). */
  failures: string[];
  failureCount: number;
  maxLatencyMs: number;
  p50LatencyMs: number;
  durationMs: number;
}

// Plain JS, evaluated as the worker's CommonJS script.
const SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const { createHash } = require('node:crypto');
const { port, host, intervalMs, deadlineMs } = workerData;

const started = performance.now();
const pending = []; // FIFO: replies come back in request order
const latencies = [];
const failures = [];
let failureCount = 0;
let n = 0;
let answered = 0;
let socket = null;
let input = Buffer.alloc(0);
let lastError = '';
let stopping = false;

function fail(text) {
  failureCount++;
  if (failures.length < 20) failures.push(text);
}

function connect() {
  input = Buffer.alloc(0);
  lastError = '';
  const s = net.connect({ port, host });
  s.setNoDelay(true);
  s.on('data', onData);
  s.on('error', (e) => (lastError = e.code || e.message));
  s.on('close', () => {
    if (socket === s) socket = null;
    for (const p of pending.splice(0)) if (!p.flagged) fail('#' + p.n + ': connection lost before the reply' + (lastError ? ' (' + lastError + ')' : ''));
  });
  return s;
}

function send() {
  if (stopping) return;
  socket ??= connect();
  const payload = Buffer.from('canary-' + n + '-' + Math.random().toString(36).slice(2));
  const frame = Buffer.alloc(8 + payload.length);
  frame.writeUInt32BE(4 + payload.length, 0);
  frame.writeUInt32BE(1, 4);
  payload.copy(frame, 8);
  pending.push({ n: n++, at: performance.now(), expect: createHash('sha256').update(payload).digest(), flagged: false });
  socket.write(frame);
}

function onData(chunk) {
  input = input.length === 0 ? chunk : Buffer.concat([input, chunk]);
  while (input.length >= 4) {
    const len = input.readUInt32BE(0);
    if (input.length < 4 + len) break;
    const reply = input.subarray(4, 4 + len);
    input = input.subarray(4 + len);
    const p = pending.shift();
    if (!p) {
      fail('a reply nobody asked for: ' + reply.toString('hex').slice(0, 64));
      continue;
    }
    answered++;
    const ms = performance.now() - p.at;
    latencies.push(ms);
    if (!reply.equals(p.expect)) fail('#' + p.n + ': wrong reply ' + reply.subarray(0, 64).toString('hex') + (reply.length > 64 ? '...' : '') + ' (' + reply.subarray(0, 80).toString('latin1') + ')');
    else if (ms > deadlineMs && !p.flagged) fail('#' + p.n + ': reply after ' + ms.toFixed(0) + ' ms');
  }
}

function overdue() {
  const now = performance.now();
  for (const p of pending) {
    if (!p.flagged && now - p.at > deadlineMs) {
      p.flagged = true;
      fail('#' + p.n + ': no reply within ' + deadlineMs + ' ms');
    }
  }
}

const sender = setInterval(send, intervalMs);
const checker = setInterval(overdue, 20);
// Ready once the first reply is back: the server has accepted and served this connection,
// so a case that counts the server's descriptors after start() counts the canary's too.
let ready = false;
const announce = (error) => {
  if (ready) return;
  ready = true;
  parentPort.postMessage(error ? { type: 'ready', error } : { type: 'ready' });
};
socket = connect();
socket.once('connect', () => send());
socket.once('error', (e) => announce(String(e.code || e.message)));
const firstReply = setInterval(() => {
  if (answered > 0) announce(null);
  else if (failureCount > 0) announce('the first request failed: ' + failures[0]);
  if (ready) clearInterval(firstReply);
}, 5);

parentPort.on('message', async (m) => {
  if (m !== 'stop') return;
  stopping = true;
  clearInterval(sender);
  // Every request sent gets its full deadline.
  const until = performance.now() + deadlineMs + 50;
  while (pending.some((p) => !p.flagged) && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
  overdue();
  clearInterval(checker);
  const sorted = latencies.slice().sort((a, b) => a - b);
  const report = {
    sent: n,
    answered,
    failures,
    failureCount,
    maxLatencyMs: sorted.length ? Math.round(sorted[sorted.length - 1]) : 0,
    p50LatencyMs: sorted.length ? Math.round(sorted[Math.floor(sorted.length / 2)]) : 0,
    durationMs: Math.round(performance.now() - started),
  };
  if (socket) {
    socket.removeAllListeners('close');
    socket.destroy();
  }
  parentPort.postMessage({ type: 'report', report });
});
`;

export class Canary {
  readonly #worker: Worker;
  #report: Promise<CanaryReport> | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /** Connect and start sending; resolves once the first request has been answered. */
  static async start(port: number, options: CanaryOptions = {}): Promise<Canary> {
    const worker = new Worker(SOURCE, {
      eval: true,
      workerData: { port, host: options.host ?? '127.0.0.1', intervalMs: options.intervalMs ?? 100, deadlineMs: options.deadlineMs ?? 1000 },
    });
    const ready = await new Promise<{ error?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (ready.error) {
      await worker.terminate();
      throw new Error(`canary could not connect to port ${port}: ${ready.error}`);
    }
    return new Canary(worker);
  }

  /** Stop sending, give every request its deadline, and report. Idempotent. */
  stop(): Promise<CanaryReport> {
    this.#report ??= new Promise<CanaryReport>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the canary did not report within 5 s')), 5000);
      this.#worker.on('message', (m: { type: string; report?: CanaryReport }) => {
        if (m.type !== 'report') return;
        clearTimeout(timer);
        resolve(m.report!);
      });
      this.#worker.once('error', reject);
      this.#worker.postMessage('stop');
    }).finally(() => this.#worker.terminate());
    return this.#report;
  }
}

/**
 * Run `body` with a canary on `port`, then assert the canary saw nothing wrong:
 * every request answered correctly within the deadline, and about one request
 * per interval (so a canary that silently stopped cannot pass).
 */
export async function withCanary<T>(port: number, body: () => Promise<T>, options: CanaryOptions = {}): Promise<{ result: T; canary: CanaryReport }> {
  const canary = await Canary.start(port, options);
  const started = Date.now();
  let result: T;
  try {
    result = await body();
    const left = started + (options.minMs ?? 1000) - Date.now();
    if (left > 0) await new Promise((r) => setTimeout(r, left));
  } catch (err) {
    await canary.stop().catch(() => {});
    throw err;
  }
  const report = await canary.stop();
  expectHealthy(report, options.intervalMs ?? 100);
  return { result, canary: report };
}

export function expectHealthy(report: CanaryReport, intervalMs = 100): void {
  expect(report.failures, `canary: ${report.failureCount} failures (max latency ${report.maxLatencyMs} ms)`).toEqual([]);
  expect(report.answered).toBe(report.sent);
  // At least half the requests its clock allows: proof that it kept sending the whole time.
  expect(report.sent).toBeGreaterThanOrEqual(Math.floor(report.durationMs / intervalMs / 2));
}
