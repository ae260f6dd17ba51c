/**
 * One Piscina worker "interface" object per worker, instead of one per worker per task.
 *
 * Piscina (5.3; 6.0.0-rc.1 is the same) hands its load balancer a list of worker views,
 * built fresh on every run() by a getter: an object with six getter closures per worker.
 * At 20k small requests/s (64 B echo, workers:2) those objects survived minor GCs
 * (sampling heap profiler, objects not collected by a scavenge: 159 of 354 B per request
 * came from that getter), so the main thread's old generation filled with garbage: a
 * scavenge took ~1 ms instead of inline's 0.3, a Mark-Compact came every ~4 s, and the
 * GC's helper threads took both cores for 2-3 ms at a time (perf sched). Cached, 21 B
 * per request survive in all, and the open-loop p99 went from 2.5 to 1.6 ms (inline 1.0;
 * bench/results 2026-11-24-vm-10 and -vm-14).
 *
 * The view's getters read the worker live, so one view per worker is the same view.
 * Patched on the prototype the first time a view is seen, if it still has that shape;
 * any other shape is left alone (Piscina then works as before, only slower).
 */

const patched = new WeakSet<object>();

export function cacheWorkerInterfaces(view: object): void {
  const key = Object.getOwnPropertySymbols(view).find((s) => s.description === 'Piscina.kWorkerData');
  if (key === undefined) return;
  const worker = (view as Record<symbol, unknown>)[key];
  if (typeof worker !== 'object' || worker === null) return;
  const proto = Object.getPrototypeOf(worker) as object | null;
  if (proto === null || patched.has(proto)) return;
  patched.add(proto);
  const desc = Object.getOwnPropertyDescriptor(proto, 'interface');
  const build = desc?.get;
  if (desc === undefined || build === undefined || !desc.configurable) return;
  const views = new WeakMap<object, unknown>();
  Object.defineProperty(proto, 'interface', {
    configurable: true,
    enumerable: desc.enumerable ?? false,
    get(this: object): unknown {
      let v = views.get(this);
      if (v === undefined) views.set(this, (v = build.call(this)));
      return v;
    },
  });
}
