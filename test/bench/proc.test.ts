import { describe, expect, it } from 'vitest';
import { cpuTicks, mainThreadTicks, statTicks, ticksPerSecond } from '../../dist/bench/proc.js';

describe('bench/proc: CPU ticks per thread', () => {
  it('reads utime + stime past a command name with spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const line = '4242 (node (x) y) R 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 11 0 99 0 0';
    expect(statTicks(line)).toBe(325);
    expect(statTicks(null)).toBe(0);
    expect(statTicks('garbage')).toBe(0);
  });

  it("counts this process's main thread apart from its other threads", async () => {
    const { Worker } = await import('node:worker_threads');
    // Busy on another thread only: the process's ticks grow, its main thread's do not grow as much.
    const worker = new Worker('const t = Date.now() + 400; while (Date.now() < t);', { eval: true });
    const main0 = mainThreadTicks(process.pid);
    const all0 = cpuTicks(process.pid);
    await new Promise((resolve) => worker.once('exit', resolve));
    const main = mainThreadTicks(process.pid) - main0;
    const all = cpuTicks(process.pid) - all0;
    expect(main0).toBeGreaterThan(0);
    // The worker's 400 ms of spinning shows in the process and not in its main thread
    // (at least 50 ms of it, however busy the machine is with other test files).
    expect(all - main).toBeGreaterThanOrEqual(0.05 * ticksPerSecond());
  });
});
