/**
 * V8 CPU profiles of the current thread through node:inspector (the pprof
 * analogue). The same functions run on the main thread (the admin server) and
 * inside a worker (a control task, see workers/worker.ts): an inspector Session
 * connects to the isolate of the thread that creates it.
 *
 * The profiler samples from V8's own sampling thread, so it records even while
 * this thread is blocked (a worker waiting in Atomics.wait between tasks shows
 * as idle time); only start and stop need this thread.
 */
import { Session } from 'node:inspector';

let session: Session | null = null;

function post(s: Session, method: string, params: object = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    s.post(method, params, (err: Error | null, result?: unknown) => (err ? reject(err) : resolve(result)));
  });
}

/** Is a profile running in this thread? */
export function profiling(): boolean {
  return session !== null;
}

/** Start sampling this thread every `intervalUs` µs. Throws if a profile is already running here. */
export async function startCpuProfile(intervalUs: number): Promise<void> {
  if (session !== null) throw new Error('a CPU profile is already running in this thread');
  const s = new Session();
  s.connect();
  session = s;
  try {
    await post(s, 'Profiler.enable');
    await post(s, 'Profiler.setSamplingInterval', { interval: intervalUs });
    await post(s, 'Profiler.start');
  } catch (err) {
    session = null;
    s.disconnect();
    throw err;
  }
}

/** Stop the running profile; returns it as .cpuprofile JSON text (opens in Chrome DevTools). */
export async function stopCpuProfile(): Promise<string> {
  const s = session;
  if (s === null) throw new Error('no CPU profile is running in this thread (did the thread restart?)');
  session = null;
  try {
    const { profile } = (await post(s, 'Profiler.stop')) as { profile: unknown };
    return JSON.stringify(profile);
  } finally {
    s.disconnect();
  }
}
