/** `shoal bench`: flags in, one load test, tables (or --json) out. Exit 0 only when every reply matched. */
import { BENCH_HELP, formatTarget, parseBenchArgs } from './options.js';
import { header, renderProgress, renderResult } from './report.js';
import { runBench } from './run.js';
import type { BenchProgress } from './run.js';

export async function benchMain(argv: string[]): Promise<number> {
  const parsed = parseBenchArgs(argv);
  if (parsed.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  const o = parsed.options;
  const target = formatTarget(o.host, o.port);
  if (!o.json) {
    process.stdout.write(
      header({ ...o, framing: o.framing.type, target, duration: o.duration / 1000, warmup: o.warmup / 1000, threads: Math.max(1, o.workers) }) + '\n',
    );
  }
  const tty = process.stderr.isTTY === true && o.progress && !o.json;
  const onProgress = tty
    ? (p: BenchProgress): void => {
        process.stderr.write(`\r\x1b[2K${renderProgress(p)}`);
      }
    : undefined;
  let result;
  try {
    result = await runBench(o, onProgress);
  } finally {
    if (tty) process.stderr.write('\r\x1b[2K');
  }
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    process.stdout.write(renderResult(result));
    if (result.generator.warning) process.stderr.write(`warning: ${result.generator.warning}\n`);
  }
  return result.errors.total > 0 || result.requests.total === 0 ? 1 : 0;
}
