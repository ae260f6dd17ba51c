/**
 * The Piscina entry: a thin shell around the handler runtime and the serve loop.
 *
 * The user's module is loaded while this module is evaluated, but its errors are
 * caught: a worker that fails before Piscina marks it ready stops the pool from
 * respawning, so a load error is reported by the serve task instead.
 */
import { threadId, workerData } from 'node:worker_threads';
import { WorkerMeter } from '../src/admin/shared.js';
import { serializeError } from '../src/errors.js';
import type { ServeResult, ServeTask, WorkerSpec } from '../src/dispatch/protocol.js';
import { createFraming } from '../src/framing/index.js';
import type { FrameEncoder } from '../src/framing/types.js';
import { HandlerRuntime } from './runtime.js';
import { serve } from './serve.js';

const spec = workerData as WorkerSpec;
const encoder: FrameEncoder | null = spec.framing ? createFraming(spec.framing, spec.maxFrame).encoder : null;
/** With metrics: this worker's counters, in shared memory (src/admin/shared.ts). */
const meter = spec.metrics ? new WorkerMeter(spec.metrics, threadId) : null;

// Load the handler (and run setup()) while Piscina waits for this module: Piscina marks
// a worker ready only after, so a serve task reaches a worker that can run it at once.
const runtime: Promise<HandlerRuntime> = HandlerRuntime.load(spec.runtime, threadId);
await runtime.catch(() => {});

export default async function task(t: ServeTask): Promise<ServeResult> {
  let rt: HandlerRuntime;
  try {
    rt = await runtime;
  } catch (err) {
    // A worker whose handler does not load: report it, do not crash the thread.
    return { loadError: serializeError(err) };
  }
  await serve(t, rt, encoder, threadId, meter, spec.handlerTimeout, spec.idleWait);
  return {};
}
