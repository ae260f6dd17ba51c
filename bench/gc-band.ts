/**
 * The 16 KiB echo and V8's old-generation threshold: `npm run bench:gc-band [-- options]`.
 *
 * The load-shape grid measured the 16 KiB echo with workers: 2 at 0.66x workers: 0. That
 * gap is not the pool's: V8 does not start incremental marking while the old generation
 * is under its activation threshold (8 MB here), and a fresh `workers: 0` server sits just
 * under it, while the pool's own state puts `workers: 2` just over. Over it, with little
 * slack below the old-generation limit, the external memory of 16 KiB buffers makes V8
 * mark-compact every few tens of milliseconds. A handler with a little state of its own
 * (a ballast of live objects here, loaded in every thread) moves `workers: 0` over the line
 * too; a realistic heap (tens of MB) leaves both far from it.
 *
 * Each cell: `shoal start` with `--trace-gc` (the bench-protocol handler behind a module
 * that allocates the ballast), the C generator at 16 x 4 with 16 KiB bodies, K = 0;
 * fresh server per run, runs interleaved, medians. Prints a markdown table; with --out
 * writes <date>-gc-band.md there. Do not run it on a machine others are testing on.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CLI, HANDLER, codeVersion, guardChildren, numberOption, startServer } from './harness.js';
import { runLoadgen } from './loadgen.js';
import { median, round } from './stats.js';

const HELP = `Usage: node dist/bench/gc-band.js [options]   (npm run bench:gc-band -- [options])

  --ballast <list>   MB of live objects the handler module keeps, per cell (default 0,1,40)
  --runs <n>         interleaved runs per cell (default 3)
  --duration <s>     measured seconds per run, after 1 s of warm-up (default 4)
  --out <dir>        write <date>-gc-band.md there (e.g. bench/results)
  -h, --help
`;

const { values } = parseArgs({
  options: {
    ballast: { type: 'string', default: '0,1,40' },
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '4' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const RUNS = numberOption(values, 'runs', 1);
const DURATION = numberOption(values, 'duration', 1);
const BALLASTS = values.ballast.split(',').map((s) => {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--ballast: "${s}" is not a number of MB >= 0`);
  return n;
});
const WORKERS = [0, 2];
guardChildren('gc-band', BALLASTS.length * WORKERS.length * RUNS * (DURATION + 40) * 1000);
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

// About 70 bytes of old-generation heap per entry (an object with a short string).
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-gc-band-'));
const handlerFor = (mb: number): string => {
  const file = join(dir, `ballast-${mb}.js`);
  writeFileSync(
    file,
    `// bench/gc-band.ts: the bench-protocol handler with ${mb} MB of live objects in every thread
export { default } from ${JSON.stringify(pathToFileURL(HANDLER).href)};
globalThis.__shoalBallast = Array.from({ length: ${Math.round(mb * 15_000)} }, (_, i) => ({ i, s: 'x' + i }));
`,
  );
  return file;
};

interface Run {
  rps: number;
  p99: number;
  markCompacts: number;
}
const cells = new Map<string, Run[]>();
const key = (mb: number, workers: number): string => `${mb}/${workers}`;

try {
  for (let run = 1; run <= RUNS; run++) {
    for (const mb of BALLASTS) {
      for (const workers of WORKERS) {
        const srv = await startServer({
          label: `w${workers} ballast ${mb}`,
          args: ['--trace-gc', CLI, 'start', '--handler', handlerFor(mb), '--workers', String(workers), '--host', '127.0.0.1', '--port', '0'],
        });
        const lg = await runLoadgen({ port: srv.port, connections: 16, pipeline: 4, size: 16_384, k: 0, durationS: DURATION, warmupS: 1 });
        await srv.stop();
        const r = lg.result;
        if (r === null || r.errors.total > 0) throw new Error(`w${workers} ballast ${mb}: loadgen failed: ${lg.stderr.slice(-500)}`);
        // --trace-gc lines are not JSON: the harness keeps them as warnings. Every thread, the whole run.
        const markCompacts = srv.warnings.filter((w) => w.includes('Mark-Compact')).length;
        (cells.get(key(mb, workers)) ?? cells.set(key(mb, workers), []).get(key(mb, workers))!).push({ rps: r.requests.perSecond, p99: r.latency.p99, markCompacts });
        log(`run ${run}/${RUNS} ballast ${mb} MB workers ${workers}: ${Math.round(r.requests.perSecond)} req/s, p99 ${r.latency.p99} ms, ${markCompacts} mark-compacts`);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const med = (runs: Run[], f: (r: Run) => number): number => median(runs.map(f));
const lines = [
  `# 16 KiB echo vs V8's old-generation threshold — ${new Date().toISOString().slice(0, 10)}, code ${codeVersion()}`,
  '',
  `Machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}. bench/loadgen (C) 16 x 4, 16 KiB bodies, K = 0, ${DURATION} s after 1 s warm-up; a fresh server per run, ${RUNS} interleaved runs, medians. Mark-compacts: every thread, the whole run (--trace-gc).`,
  '',
  '| ballast (MB of live objects per thread) | workers: 0 req/s | workers: 2 req/s | workers: 2 / workers: 0 | mark-compacts w0 / w2 | p99 ms w0 / w2 |',
  '|--:|--:|--:|--:|--:|--:|',
];
for (const mb of BALLASTS) {
  const w0 = cells.get(key(mb, 0))!;
  const w2 = cells.get(key(mb, 2))!;
  const r0 = med(w0, (r) => r.rps);
  const r2 = med(w2, (r) => r.rps);
  lines.push(
    `| ${mb} | ${Math.round(r0).toLocaleString('en-US')} | ${Math.round(r2).toLocaleString('en-US')} | ${round(r2 / r0, 2)}× | ${med(w0, (r) => r.markCompacts)} / ${med(w2, (r) => r.markCompacts)} | ${round(med(w0, (r) => r.p99), 2)} / ${round(med(w2, (r) => r.p99), 2)} |`,
  );
}
const md = `${lines.join('\n')}\n`;
process.stdout.write(md);
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  const file = join(values.out, `${new Date().toISOString().slice(0, 10)}-gc-band.md`);
  writeFileSync(file, md);
  log(`wrote ${file}`);
}
