/**
 * The Piscina entry: a thin shell around the handler runtime.
 *
 * The user's module is loaded while this module is evaluated, but its errors are
 * caught: a worker that fails before Piscina marks it ready stops the pool from
 * respawning, so load errors surface as task results instead.
 */
import { threadId, workerData } from 'node:worker_threads';
import { startCpuProfile, stopCpuProfile } from '../src/admin/profile.js';
import { WorkerMeter } from '../src/admin/shared.js';
import { serializeError } from '../src/errors.js';
import { PROGRESS_CELL } from '../src/dispatch/protocol.js';
import type { BarrierResult, BarrierTask, BatchResult, ControlRequest, Task, WorkerSpec } from '../src/dispatch/protocol.js';
import { createFraming } from '../src/framing/index.js';
import type { FrameEncoder } from '../src/framing/types.js';
import { runBatch } from './batch.js';
import { HandlerRuntime } from './runtime.js';

const spec = workerData as WorkerSpec;
const encoder: FrameEncoder | null = spec.framing ? createFraming(spec.framing, spec.maxFrame).encoder : null;
let runtime: Promise<HandlerRuntime> | null = null;
/** Barriers this worker already took part in (by their SharedArrayBuffer). */
const joined = new WeakSet<SharedArrayBuffer | ArrayBuffer>();

/** With metrics: this worker's counters, in shared memory (src/admin/shared.ts). */
const meter = spec.metrics ? new WorkerMeter(spec.metrics, threadId) : null;

function getRuntime(): Promise<HandlerRuntime> {
  return (runtime ??= HandlerRuntime.load(spec.runtime, threadId));
}

// Load the handler (and run setup()) while Piscina waits for this module: Piscina marks
// a worker ready only after, so no task queues on a replacement worker that cannot run
// it yet (the live workers take them). A load error is not thrown here — a worker that
// fails before it is ready stops Piscina from respawning — but reported by every task.
await getRuntime().catch(() => {});

/**
 * Every worker must run init (and teardown) exactly once, but Piscina picks the
 * worker. So each worker that joins blocks until all `parties` have joined (or
 * one failed, or the time is up); extra copies of the task that land on a worker
 * that already joined answer `again` at once. The caller sends enough copies.
 */
async function barrier(task: BarrierTask): Promise<BarrierResult> {
  const sab = task.barrier.buffer;
  if (joined.has(sab)) return { threadId, again: true, error: null };
  joined.add(sab);
  let error = null;
  try {
    if (task.kind === 'init') await getRuntime();
    else if (task.kind === 'teardown') await (await getRuntime()).teardown();
  } catch (err) {
    error = serializeError(err);
    Atomics.store(task.barrier, 1, 1);
  }
  Atomics.add(task.barrier, 0, 1);
  Atomics.notify(task.barrier, 0);
  const deadline = Date.now() + task.timeoutMs;
  for (;;) {
    const arrived = Atomics.load(task.barrier, 0);
    if (arrived >= task.parties || Atomics.load(task.barrier, 1) !== 0) break;
    const left = deadline - Date.now();
    if (left <= 0) break;
    Atomics.wait(task.barrier, 0, arrived, left);
  }
  // A control task is acted on after everyone joined, so the others are not held while it runs.
  if (task.kind === 'control' && task.control?.target === threadId) {
    try {
      return { threadId, again: false, error: null, value: await control(task.control) };
    } catch (err) {
      return { threadId, again: false, error: serializeError(err) };
    }
  }
  return { threadId, again: false, error };
}

async function control(req: ControlRequest): Promise<unknown> {
  switch (req.op) {
    case 'profile-start':
      await startCpuProfile(req.intervalUs);
      return null;
    case 'profile-stop':
      return stopCpuProfile();
  }
}

export default async function task(t: Task): Promise<unknown> {
  if (t.kind === 'batch') {
    let rt: HandlerRuntime;
    try {
      rt = await getRuntime();
    } catch (err) {
      // A replacement worker whose handler no longer loads: report, do not crash the thread.
      const failed: BatchResult = { meta: new Uint32Array(0), length: 0, errors: null, elapsedMs: 0, loadError: serializeError(err) };
      return failed;
    }
    // Returned as is: meta and errors are small copies, the replies are in shared memory.
    // Nothing is transferred (see protocol.ts: a detach would slow this thread's handler).
    return runBatch(t, rt, encoder, new Float64Array(t.input, 0, PROGRESS_CELL), spec.handlerTimeout, meter);
  }
  return barrier(t);
}
