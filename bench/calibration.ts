/**
 * K for ~100 µs and ~1 ms of CPU per message on this machine, measured with the
 * bench-protocol handler itself and kept in bench/results/calibration-<host>.json
 * (measured again when the handler or Node changes, or when this machine's pace has moved).
 *
 * The pace is checked on every run: the machines behind one host name differ 2-3x
 * (2026-12-01: 0.62 µs per step; 2026-12-03: 0.215), and a stale K puts the "~100 µs"
 * cells at ~40 µs of real work, where the pool's hand-off weighs twice as much.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { makePayload } from '../src/bench/message.js';
import { HANDLER, HANDLER_DIR } from './harness.js';
import type { Calibration } from './scenarios.js';
import { median } from './stats.js';

function handlerHash(): string {
  const h = createHash('sha256');
  for (const f of readdirSync(HANDLER_DIR).filter((f) => f.endsWith('.js')).sort()) h.update(f).update(readFileSync(join(HANDLER_DIR, f)));
  return h.digest('hex').slice(0, 16);
}

/** Time the bench-protocol handler itself: per-message cost = overhead + K × step. */
async function calibrate(): Promise<Calibration> {
  const mod = (await import(pathToFileURL(HANDLER).href)) as { default: (frame: Buffer) => unknown };
  const handler = mod.default;
  const payload = makePayload(64);
  const frameFor = (k: number): Buffer => {
    const b = Buffer.allocUnsafe(4 + payload.length);
    b.writeUInt32BE(k, 0);
    payload.copy(b, 4);
    return b;
  };
  const timeCalls = (k: number, calls: number): number => {
    const f = frameFor(k);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) handler(f);
    return Number(process.hrtime.bigint() - t0) / 1000 / calls; // µs per call
  };
  timeCalls(1000, 300); // warm the JIT
  const big = 4000;
  const perCallBig = median(Array.from({ length: 7 }, () => timeCalls(big, 60)));
  const perCallOne = median(Array.from({ length: 7 }, () => timeCalls(1, 5000)));
  const stepUs = (perCallBig - perCallOne) / (big - 1);
  const overhead = Math.max(0, perCallOne - stepUs);
  return {
    stepUs: Math.round(stepUs * 10_000) / 10_000,
    k100: Math.max(1, Math.round((100 - overhead) / stepUs)),
    k1ms: Math.max(1, Math.round((1000 - overhead) / stepUs)),
    measuredAt: new Date().toISOString(),
    node: process.version,
    handlerHash: handlerHash(),
  };
}

/** A stored step cost this far from the one measured now (either way) is stale. */
export const PACE_TOLERANCE = 0.15;

/** True when `stored` was measured at this machine's pace (`measured`, µs per step) within PACE_TOLERANCE. */
export function paceHolds(stored: number, measured: number): boolean {
  return Math.abs(measured / stored - 1) <= PACE_TOLERANCE;
}

/**
 * This machine's calibration from `dir`: kept while the handler, Node and the pace hold
 * (so runs of one machine use the same K), measured again (and saved) otherwise or when `force`d.
 */
export async function loadCalibration(dir: string, host: string, force: boolean, note: (msg: string) => void): Promise<Calibration> {
  const file = join(dir, `calibration-${host}.json`);
  const hash = handlerHash();
  const fresh = await calibrate();
  if (!force && existsSync(file)) {
    const c = JSON.parse(readFileSync(file, 'utf8')) as Calibration;
    if (c.handlerHash !== hash || c.node !== process.version) {
      note(`calibration in ${file} is for another handler or Node version: measuring again`);
    } else if (!paceHolds(c.stepUs, fresh.stepUs)) {
      note(`calibration in ${file} is for another pace (${c.stepUs} µs per step, now ${fresh.stepUs}): measuring again`);
    } else {
      return c;
    }
  }
  writeFileSync(file, JSON.stringify(fresh, null, 2) + '\n');
  return fresh;
}
