/**
 * The load-shape grid (issue 10): `npm run bench:shapes [-- options]`.
 *
 * Every cell of bench/shapes-grid.ts against every server: shoal workers: N (the pool,
 * with --server-args), shoal workers: 0, a cluster of N processes running the same
 * handler, and with --compare-ref the pool of another commit (built in a checkout under
 * $TMPDIR). Load from the native generator (bench/loadgen/), which verifies
 * every reply and reports its own CPU. Interleaved: run r is the outer loop, a fresh
 * server per run, the median of the runs per cell. The closed cells run first: an
 * open-loop cell's rate is a share of the median of the pool's runs of its capacity cell
 * (one run's figure drifts with the machine by up to 1.5x, and a rate set from a lucky run
 * is an overload, not a half load). Then cold-start memory (10,000
 * connections used once against a fresh server) and the generator agreement check.
 * Writes bench/results/<date>-shapes-<host>.{json,md,svg}.
 *
 * Every child has a deadline and is killed by its pid past it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCalibration } from './calibration.js';
import { CLI, CLUSTER, HANDLER, ROOT, codeVersion, guardChildren, killAll, runShoalBench, sleep, startServer } from './harness.js';
import type { RunningServer, ServerCommand } from './harness.js';
import { buildLoadgen, generatorSaturated, holdConnections, runLoadgen } from './loadgen.js';
import type { LoadgenResult } from './loadgen.js';
import { Sampler, sampleTree } from './proc.js';
import type { Calibration } from './scenarios.js';
import { AGREE_CELLS, BASELINES, CELLS, NOISY_OTHER_CPU, PROBES, agreement, kValue, openRate, openTable, perConnectionKiB, ratioOf, ratioTable, selectCells, summarize } from './shapes-grid.js';
import type { AgreeFigures, CellSummary, Extra, MemoryFigures, RunFigures, ServerLabel, ShapeCell, ShapeServerId, Summaries } from './shapes-grid.js';
import { median, round } from './stats.js';
import { heatMap } from './svg.js';

const NET_ECHO = join(ROOT, 'dist/bench/net-echo-server.js');

const HELP = `Usage: node dist/bench/shapes.js [options]   (npm run bench:shapes -- [options])

  --quick                  1.5 s runs, 0.5 s warm-up, 1 run (default 5 s, 1 s, 3 runs)
  --runs <n>               interleaved runs per cell, median reported
  --duration <s>           seconds measured per run
  --warmup <s>             seconds of warm-up per run (default 3: past the JIT's start-up)
  --only <names>           cells and groups, comma separated: ${CELLS.map((c) => c.id).join(', ')};
                           closed, open, echo, 100us, 1ms, memory, agree (default: all)
  --servers <ids>          pool,inline,cluster (default all three; ref is added by --compare-ref)
  --server-args "<flags>"  extra \`shoal start\` flags for the pool server (split on spaces)
  --compare-ref <git-ref>  also run the pool server of that commit (built in $TMPDIR/shoal-ref-<commit>/)
  --ref-server-args "..."  extra \`shoal start\` flags for the ref's pool server (default none)
  --pool-node-flags "..."  Node/V8 flags for the pool server's process only, e.g.
                           "--max-semi-space-size=8" (split on spaces)
  --open-fraction <x>      open-loop rate as a share of the pool's closed-loop capacity
                           (the median of its runs of the capacity cell; default 0.5)
  --gen-threads <n>        load generator threads (default 1)
  --memory-connections <n> connections of the cold-start memory run (default 10000)
  --memory-runs <n>        cold-start runs per server (default: --runs); its figure is bimodal,
                           so more runs than the grid's make a steadier median
  --recalibrate            measure K again
  --out <dir>              results directory (default bench/results)
  -h, --help
`;

guardChildren('shapes', 60 * 60_000);

const log = (msg: string): void => void process.stdout.write(`${msg}\n`);

// ---------------------------------------------------------------------------- servers

interface Setup {
  n: number;
  serverArgs: string[];
  /** Node/V8 flags before the pool server's script (--pool-node-flags). */
  nodeFlags: string[];
  refArgs: string[];
  refDir: string | null;
}

const COMMON = ['--host', '127.0.0.1', '--port', '0', '--max-connections', '20000'];

function serverCommand(id: ShapeServerId, s: Setup, nofile?: number): ServerCommand {
  const shoal = (root: string, workers: number, extra: string[], nodeFlags: string[] = []): ServerCommand => ({
    label: id,
    args: [...nodeFlags, join(root, 'dist/src/cli.js'), 'start', '--workers', String(workers), '--log-level', 'info', '--handler', join(root, 'examples/bench-protocol/handler.js'), ...COMMON, ...extra],
    cwd: root,
    nofile,
  });
  switch (id) {
    case 'pool':
      return shoal(ROOT, s.n, s.serverArgs, s.nodeFlags);
    case 'inline':
      return shoal(ROOT, 0, []);
    case 'ref':
      return shoal(s.refDir!, s.n, s.refArgs);
    case 'cluster':
      return { label: id, args: [CLUSTER, '--processes', String(s.n), '--handler', HANDLER, ...COMMON], nofile };
    case 'net':
      return { label: id, args: [NET_ECHO, '--host', '127.0.0.1', '--port', '0'], nofile };
  }
}

function labels(ids: ShapeServerId[], s: Setup, ref: string | null): ServerLabel[] {
  const name: Record<ShapeServerId, string> = {
    pool: `workers: ${s.n}${s.serverArgs.length || s.nodeFlags.length ? ` (${[...s.nodeFlags, ...s.serverArgs].join(' ')})` : ''}`,
    inline: 'workers: 0',
    cluster: `cluster of ${s.n}`,
    ref: `workers: ${s.n} @${ref ?? 'ref'}`,
    net: 'node net echo',
  };
  return ids.map((id) => ({ id, label: name[id] }));
}

/** A checkout of `ref` (git archive, no worktree) in $TMPDIR, with node_modules and a build; reused when present. */
function prepareRef(ref: string): { dir: string; commit: string } {
  const git = (...args: string[]): string => execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', timeout: 60_000 }).trim();
  const commit = git('rev-parse', '--verify', `${ref}^{commit}`);
  // Outside the repository: its sources under bench/ would otherwise join this tree's tsc build.
  const dir = join(tmpdir(), `shoal-ref-${commit.slice(0, 12)}`);
  if (existsSync(join(dir, 'dist/src/cli.js'))) return { dir, commit };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`compare-ref: checking out ${ref} (${commit.slice(0, 12)}) into ${dir}`);
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${commit}" | tar -x -C "${dir}"`], { stdio: 'inherit', timeout: 120_000 });
  const sameDeps = readFileSync(join(dir, 'package-lock.json'), 'utf8') === readFileSync(join(ROOT, 'package-lock.json'), 'utf8');
  if (sameDeps) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  else execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit', timeout: 300_000 });
  execFileSync('npm', ['run', 'build'], { cwd: dir, stdio: 'inherit', timeout: 300_000 });
  return { dir, commit };
}

// ---------------------------------------------------------------------------- one run

interface ShapeRun extends RunFigures {
  rep: number;
  cell: string;
  server: ShapeServerId;
  k: number;
  rate: number;
  genThreadsCpu: number[];
  errorDetail: LoadgenResult['errors'] | null;
  loadAvg1: number;
  warnings: string[];
  failure?: string;
}

interface Plan {
  k: number;
  rate: number;
  durationS: number;
  warmupS: number;
  genThreads: number;
}

async function runOnce(rep: number, cell: ShapeCell, id: ShapeServerId, setup: Setup, plan: Plan): Promise<ShapeRun> {
  const loadAvg1 = round(loadavg()[0] ?? 0, 2);
  const srv = await startServer(serverCommand(id, setup));
  const sampler = new Sampler(srv.pid).start(200);
  let run;
  try {
    await sleep(300); // let the pool settle
    run = await runLoadgen({
      port: srv.port,
      connections: cell.connections,
      pipeline: cell.pipeline,
      threads: plan.genThreads,
      durationS: plan.durationS,
      warmupS: plan.warmupS,
      size: cell.size,
      k: plan.k,
      rate: plan.rate,
    });
  } finally {
    sampler.stop();
    await srv.stop();
  }
  const r = run.result;
  const base = { rep, cell: cell.id, server: id, k: plan.k, rate: plan.rate, loadAvg1, warnings: srv.warnings.slice(0, 20) };
  if (!r) {
    return {
      ...base, rps: 0, p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0, errors: 1, genCpu: 0, genSaturated: false, genThreadsCpu: [],
      serverPeakRssMiB: round(sampler.peakRssKiB() / 1024, 1), serverCpu: 0, mainCpu: 0, otherCpu: 0, errorDetail: null,
      failure: `loadgen exit ${run.code}: ${run.stderr.slice(0, 500)}`,
    };
  }
  const from = r.startedAtMs + r.warmup * 1000;
  const cpu = sampler.cpuPercent(from, from + r.duration * 1000);
  return {
    ...base,
    rps: r.requests.perSecond,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    p99_9: r.latency.p99_9,
    max: r.latency.max,
    errors: r.errors.total,
    errorDetail: r.errors,
    genCpu: r.cpu.percent,
    genThreadsCpu: r.cpu.threads,
    genSaturated: generatorSaturated(r.cpu),
    serverPeakRssMiB: round(sampler.peakRssKiB() / 1024, 1),
    serverCpu: round(cpu.tree, 1),
    mainCpu: round(cpu.main, 1),
    otherCpu: round(Math.max(0, cpu.system - cpu.tree - r.cpu.percent), 1),
  };
}

// ---------------------------------------------------------------------------- cold-start memory

interface MemoryRun extends MemoryFigures {
  rep: number;
  server: ShapeServerId;
  perConnKiB: number | null;
  mismatches: number;
  openMs: number;
  failure?: string;
}

/** A fresh server, no traffic before: RSS, then `count` connections used once each and held, then RSS. */
async function memoryRun(rep: number, id: ShapeServerId, setup: Setup, count: number): Promise<MemoryRun> {
  const srv: RunningServer = await startServer(serverCommand(id, setup, count + 1024));
  const weigh = async (): Promise<number> => {
    const xs: number[] = [];
    for (let i = 0; i < 5; i++) {
      xs.push(sampleTree(srv.pid).rssKiB);
      await sleep(200);
    }
    return median(xs);
  };
  try {
    await sleep(1000); // startup allocations settle; no request has been served
    const before = await weigh();
    const held = await holdConnections(srv.port, count);
    try {
      await sleep(1000);
      const after = await weigh();
      const m: MemoryFigures = { connections: count, opened: held.result.opened, failed: held.result.failed, rssBeforeKiB: before, rssAfterKiB: after };
      return { rep, server: id, ...m, perConnKiB: perConnectionKiB(m), mismatches: held.result.mismatches, openMs: held.result.ms };
    } finally {
      await held.release();
    }
  } finally {
    await srv.stop();
  }
}

// ---------------------------------------------------------------------------- generator agreement

interface AgreeRun {
  rep: number;
  cell: string;
  generator: 'loadgen' | 'shoal-bench';
  rps: number;
  genCpu: number;
  errors: number;
  otherCpu: number;
  failure?: string;
}

async function agreeRun(rep: number, cell: ShapeCell, generator: AgreeRun['generator'], setup: Setup, plan: Plan): Promise<AgreeRun> {
  const srv = await startServer(serverCommand('pool', setup));
  const sampler = new Sampler(srv.pid).start(200);
  const base = { rep, cell: cell.id, generator };
  /** Other processes' CPU in the measured window: what makes the comparison noise. */
  const other = (fromMs: number, genCpu: number): number => {
    const c = sampler.cpuPercent(fromMs, fromMs + plan.durationS * 1000);
    return round(Math.max(0, c.system - c.tree - genCpu), 1);
  };
  try {
    await sleep(300);
    if (generator === 'loadgen') {
      const r = await runLoadgen({ port: srv.port, connections: cell.connections, pipeline: cell.pipeline, threads: plan.genThreads, durationS: plan.durationS, warmupS: plan.warmupS, size: cell.size, k: plan.k });
      sampler.stop();
      if (!r.result) return { ...base, rps: 0, genCpu: 0, errors: 1, otherCpu: 0, failure: r.stderr.slice(0, 500) };
      const x = r.result;
      return { ...base, rps: x.requests.perSecond, genCpu: x.cpu.percent, errors: x.errors.total, otherCpu: other(x.startedAtMs + x.warmup * 1000, x.cpu.percent) };
    }
    const args = [`127.0.0.1:${srv.port}`, '-c', String(cell.connections), '-p', String(cell.pipeline), '-s', String(cell.size), '-k', String(plan.k), '-d', `${Math.round(plan.durationS * 1000)}ms`];
    if (plan.warmupS > 0) args.push('--warmup', `${Math.round(plan.warmupS * 1000)}ms`);
    const b = await runShoalBench(args, (plan.durationS + plan.warmupS) * 1000 + 60_000);
    sampler.stop();
    if (!b.result) return { ...base, rps: 0, genCpu: 0, errors: 1, otherCpu: 0, failure: b.stderr.slice(0, 500) };
    const x = b.result;
    return { ...base, rps: x.requests.perSecond, genCpu: x.generator.cpu, errors: x.errors.total, otherCpu: other(Date.parse(x.startedAt) + x.warmup * 1000, x.generator.cpu) };
  } finally {
    sampler.stop();
    await srv.stop();
  }
}

// ---------------------------------------------------------------------------- output

interface Results {
  date: string;
  host: string;
  commit: string;
  ref: { name: string; commit: string; serverArgs: string[] } | null;
  machine: { cpus: number; model: string; memoryGiB: number; node: string; kernel: string };
  calibration: Calibration;
  settings: { runs: number; durationS: number; warmupS: number; genThreads: number; serverArgs: string[]; nodeFlags?: string[]; openFraction: number; memoryConnections: number; memoryRuns?: number };
  servers: ServerLabel[];
  cells: Array<ShapeCell & { kValue: number }>;
  rates: Record<string, number>;
  /** Capacity runs behind open-loop rates whose closed cell was not in the grid. */
  probes: ShapeRun[];
  summaries: Summaries;
  runs: ShapeRun[];
  memory: MemoryRun[];
  agree: AgreeRun[];
  elapsedSeconds: number;
}

function memoryLines(r: Results): string[] {
  if (r.memory.length === 0) return [];
  const ids = [...new Set(r.memory.map((m) => m.server))];
  const lines = [
    '', `## Cold-start memory: ${r.settings.memoryConnections.toLocaleString('en-US')} connections, one request each, fresh server`, '',
    '| server | RSS before MiB | RSS after MiB | KiB per used connection (median) | min–max | runs | failed |', '|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const id of ids) {
    const ms = r.memory.filter((m) => m.server === id && m.perConnKiB !== null);
    const label = labels([id], { n: r.machine.cpus, serverArgs: r.settings.serverArgs, nodeFlags: r.settings.nodeFlags ?? [], refArgs: [], refDir: null }, r.ref?.name ?? null)[0]!.label;
    const failed = r.memory.filter((m) => m.server === id).reduce((a, m) => a + m.failed + (m.failure ? 1 : 0), 0);
    lines.push(
      `| ${label} | ${round(median(ms.map((m) => m.rssBeforeKiB)) / 1024, 1)} | ${round(median(ms.map((m) => m.rssAfterKiB)) / 1024, 1)} | ` +
        `${ms.length ? median(ms.map((m) => m.perConnKiB!)).toFixed(2) : 'n/a'} | ${ms.length ? `${Math.min(...ms.map((m) => m.perConnKiB!)).toFixed(2)}–${Math.max(...ms.map((m) => m.perConnKiB!)).toFixed(2)}` : 'n/a'} | ${ms.length} | ${failed} |`,
    );
  }
  return lines;
}

function agreeLines(r: Results): string[] {
  if (r.agree.length === 0) return [];
  const lines = ['', '## Generator agreement (workers: ' + r.machine.cpus + ' server, same cell, fresh server per run)', '',
    '| cell | loadgen req/s | shoal bench req/s | shoal bench / loadgen (medians) | median of paired ratios | loadgen CPU % | shoal bench CPU % | other load % | errors |', '|---|--:|--:|--:|--:|--:|--:|--:|--:|'];
  for (const id of [...new Set(r.agree.map((a) => a.cell))]) {
    const ok = (g: AgreeRun['generator'], rep: number): boolean => r.agree.some((a) => a.cell === id && a.generator === g && a.rep === rep && !a.failure);
    const paired = (a: AgreeRun): boolean => ok('loadgen', a.rep) && ok('shoal-bench', a.rep); // both ran in that run: index i pairs
    const of = (g: AgreeRun['generator']): AgreeRun[] => r.agree.filter((a) => a.cell === id && a.generator === g && paired(a)).sort((x, y) => x.rep - y.rep);
    const runs = r.agree.filter((a) => a.cell === id);
    const f: AgreeFigures = { loadgenRps: of('loadgen').map((a) => a.rps), shoalBenchRps: of('shoal-bench').map((a) => a.rps), loadgenCpu: of('loadgen').map((a) => a.genCpu), shoalBenchCpu: of('shoal-bench').map((a) => a.genCpu) };
    const a = agreement(f);
    lines.push(`| ${CELLS.find((c) => c.id === id)?.title ?? id} | ${Math.round(a.loadgen)} | ${Math.round(a.shoalBench)} | ${a.ratio === null ? 'n/a' : a.ratio.toFixed(3)} | ${a.pairedRatio === null ? 'n/a' : a.pairedRatio.toFixed(3)} | ${median(f.loadgenCpu).toFixed(0)} | ${median(f.shoalBenchCpu).toFixed(0)} | ${median(runs.map((x) => x.otherCpu)).toFixed(0)} | ${runs.reduce((n, x) => n + x.errors, 0)} |`);
  }
  return lines;
}

function markdown(r: Results, svgFile: string): string {
  const n = r.machine.cpus;
  const others = r.runs.map((x) => x.otherCpu);
  const noisy = others.filter((x) => x > NOISY_OTHER_CPU).length;
  const lines = [
    `# shoal load shapes — ${r.date}, ${r.host}, code ${r.commit}${r.ref ? `, ref ${r.ref.name} = ${r.ref.commit.slice(0, 12)}` : ''}`,
    '',
    `Machine: ${n} cores (${r.machine.model}), ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, Linux ${r.machine.kernel}. ` +
      `Load from bench/loadgen (C, epoll, ${r.settings.genThreads} thread${r.settings.genThreads > 1 ? 's' : ''}, every reply verified) on the same machine over loopback.`,
    `K: ~100 µs = ${r.calibration.k100}, ~1 ms = ${r.calibration.k1ms} (${r.calibration.stepUs} µs per SHA-256 step of the bench-protocol handler). ` +
      `Each cell: median of ${r.settings.runs} interleaved run(s) of ${r.settings.durationS} s after ${r.settings.warmupS} s warm-up, a fresh server per run.` +
      (r.settings.serverArgs.length ? ` Pool server flags: \`${r.settings.serverArgs.join(' ')}\`.` : '') +
      (r.settings.nodeFlags?.length ? ` Pool server's Node flags: \`${r.settings.nodeFlags.join(' ')}\`.` : ''),
    `⚑ = the generator used ≥ 90 % of a core in some run of that cell (it may have been the bottleneck); ` +
      `≈ = other processes used > ${NOISY_OTHER_CPU}% of a core during that cell (median): noise, not a figure. ` +
      `Other load (CPU used by neither server nor generator): median ${median(others).toFixed(0)}% of a core, ${noisy} of ${others.length} runs above ${NOISY_OTHER_CPU}%` +
      (noisy > 0 ? ' — noisy figures.' : '.'),
  ];
  const ratios = ratioTable(r.cells, r.summaries, r.servers);
  if (ratios.length) lines.push('', '## req/s and ratios (closed loop)', '', ...ratios);
  const open = openTable(r.cells, r.summaries, r.servers, r.rates);
  if (open.length) {
    lines.push('', `## Open loop at ${Math.round(r.settings.openFraction * 100)}% of the pool's closed-loop capacity (the median of its runs; latency from the scheduled send time)`, '', ...open);
  }
  lines.push(...memoryLines(r), ...agreeLines(r));
  if (r.runs.length) lines.push('', '## Every cell', '', '| cell | server | req/s (min–max) | p50 | p99 | p99.9 ms | server CPU % | main thread(s) % | peak RSS MiB | generator CPU % | other load % | errors |', '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const c of r.cells) {
    for (const s of r.servers) {
      const x: CellSummary | undefined = r.summaries[c.id]?.[s.id];
      if (!x) continue;
      lines.push(
        `| ${c.id} | ${s.label} | ${Math.round(x.rps)} (${Math.round(x.rpsMin)}–${Math.round(x.rpsMax)}) | ${x.p50.toFixed(3)} | ${x.p99.toFixed(3)} | ${x.p99_9.toFixed(3)} | ` +
          `${x.serverCpu.toFixed(0)} | ${(x.mainCpu ?? 0).toFixed(0)} | ${x.peakRssMiB.toFixed(0)} | ${x.genCpu.toFixed(0)}${x.genSaturated ? ' ⚑' : ''} | ${x.otherCpu.toFixed(0)} | ${x.errors} |`,
      );
    }
  }
  if (r.cells.some((c) => c.kind === 'closed')) lines.push('', `![ratio heat map](${svgFile})`);
  lines.push('', `Run time ${Math.round(r.elapsedSeconds)} s. Raw figures of every run: the .json next to this file.`, '');
  return lines.join('\n');
}

function heatSvg(r: Results): string {
  const closed = r.cells.filter((c) => c.kind === 'closed');
  const bases = BASELINES.filter((b) => r.servers.some((s) => s.id === b.id));
  return heatMap(
    `shoal workers: ${r.machine.cpus} req/s ratios per load shape (${r.date}, ${r.host}, ${r.commit})`,
    closed.map((c) => c.title),
    bases.map((b) => (b.id === 'ref' ? `/ ${r.ref?.name ?? 'ref'}` : b.column.replace('workers: 2', `workers: ${r.machine.cpus}`).replace(/^.*\/ /, '/ '))),
    closed.map((c) => bases.map((b) => {
      const x = ratioOf(r.summaries[c.id], b.id);
      return { value: x.value, marked: x.saturated, noisy: x.noisy };
    })),
    `median of ${r.settings.runs} interleaved run(s) of ${r.settings.durationS} s; loadgen (C) verifying every reply`,
  );
}

// ---------------------------------------------------------------------------- main

/** `--server-args "--flag v"`: a value that starts with a dash, which parseArgs takes only as --opt=value. */
function joinDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === '--server-args' || a === '--ref-server-args' || a === '--pool-node-flags') && i + 1 < argv.length) out.push(`${a}=${argv[++i]}`);
    else out.push(a);
  }
  return out;
}

function parseOptions(argv: string[]) {
  return parseArgs({
    args: joinDashValues(argv),
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      only: { type: 'string' },
      servers: { type: 'string' },
      'server-args': { type: 'string' },
      'compare-ref': { type: 'string' },
      'ref-server-args': { type: 'string' },
      'pool-node-flags': { type: 'string' },
      'open-fraction': { type: 'string' },
      'gen-threads': { type: 'string' },
      'memory-connections': { type: 'string' },
      'memory-runs': { type: 'string' },
      recalibrate: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
}

async function main(): Promise<number> {
  let values: ReturnType<typeof parseOptions>['values'];
  try {
    ({ values } = parseOptions(process.argv.slice(2)));
  } catch (err) {
    process.stderr.write(`shapes: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  for (const f of [CLI, CLUSTER, NET_ECHO]) {
    if (!existsSync(f)) {
      process.stderr.write(`shapes: build first (npm run build): ${f} is missing\n`);
      return 2;
    }
  }
  const t0 = Date.now();
  const quick = values.quick === true;
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  const durationS = Number(values.duration ?? (quick ? 1.5 : 5));
  // 3 s: a fresh server's isolates compile their hot code on V8's platform threads for the first
  // ~2 s of load (20 % of a core here with workers: 2, whose three isolates share two cores with
  // the generator; workers: 0 has the spare core for it). A 1 s warm-up measured that start-up.
  const warmupS = Number(values.warmup ?? (quick ? 0.5 : 3));
  const openFraction = Number(values['open-fraction'] ?? 0.5);
  const genThreads = Number(values['gen-threads'] ?? 1);
  const memoryConnections = Number(values['memory-connections'] ?? 10_000);
  const memoryRuns = Number(values['memory-runs'] ?? runs);
  const split = (s: string | undefined): string[] => (s ?? '').split(/\s+/).filter(Boolean);
  let selection;
  try {
    selection = selectCells(values.only);
  } catch (err) {
    process.stderr.write(`shapes: ${(err as Error).message}\n`);
    return 2;
  }
  const { cells, extras } = selection;
  const wanted = new Set(split(values.servers?.replace(/,/g, ' ')));
  const serverIds: ShapeServerId[] = (['pool', 'inline', 'cluster'] as const).filter((id) => wanted.size === 0 || wanted.has(id));
  for (const w of wanted) {
    if (!['pool', 'inline', 'cluster'].includes(w)) {
      process.stderr.write(`shapes: --servers: unknown server "${w}" (pool, inline, cluster)\n`);
      return 2;
    }
  }
  const numbersOk = runs >= 1 && durationS > 0 && warmupS >= 0 && openFraction > 0 && openFraction <= 1 && genThreads >= 1 && memoryConnections >= 1 && Number.isInteger(memoryRuns) && memoryRuns >= 1;
  if (!numbersOk || serverIds.length === 0 || (cells.length === 0 && extras.length === 0)) {
    process.stderr.write(`shapes: nothing to run, or a bad number\n${HELP}`);
    return 2;
  }
  buildLoadgen(); // fail now, clearly, if there is no C compiler
  const setup: Setup = { n: availableParallelism(), serverArgs: split(values['server-args']), nodeFlags: split(values['pool-node-flags']), refArgs: split(values['ref-server-args']), refDir: null };
  let ref: Results['ref'] = null;
  if (values['compare-ref']) {
    const p = prepareRef(values['compare-ref']);
    setup.refDir = p.dir;
    ref = { name: values['compare-ref'], commit: p.commit, serverArgs: setup.refArgs };
    serverIds.push('ref');
  }
  const out = values.out ?? join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '_');
  const calibration = await loadCalibration(out, host, values.recalibrate === true, log);
  log(`calibration: K(100 µs) = ${calibration.k100}, K(1 ms) = ${calibration.k1ms}`);
  const closed = cells.filter((c) => c.kind === 'closed');
  const open = cells.filter((c) => c.kind === 'open');
  log(`shapes: ${cells.length} cells × ${serverIds.length} servers × ${runs} runs of ${durationS} s (+${warmupS} s warm-up)${extras.length ? `, plus ${extras.join(', ')}` : ''}`);

  const records: ShapeRun[] = [];
  const probes: ShapeRun[] = [];
  const rates: Record<string, number> = {};
  const plan = (cell: ShapeCell, rate = 0): Plan => ({ k: kValue(cell, calibration), rate, durationS, warmupS, genThreads });
  const attempt = async (rep: number, cell: ShapeCell, id: ShapeServerId, rate = 0): Promise<ShapeRun | null> => {
    try {
      const r = await runOnce(rep, cell, id, setup, plan(cell, rate));
      records.push(r);
      log(
        `run ${rep} ${cell.id.padEnd(12)} ${id.padEnd(7)} ${r.failure ? `FAILED ${r.failure}` : `${Math.round(r.rps).toString().padStart(7)} req/s  p50 ${r.p50.toFixed(3)}  p99 ${r.p99.toFixed(3)} ms  errors ${r.errors}  server ${r.serverCpu.toFixed(0)}% (main ${r.mainCpu.toFixed(0)}%) ${r.serverPeakRssMiB} MiB  gen ${r.genCpu.toFixed(0)}%${r.genSaturated ? ' ⚑' : ''}  other ${r.otherCpu.toFixed(0)}%`}`,
      );
      return r;
    } catch (err) {
      log(`run ${rep} ${cell.id} ${id}: FAILED ${(err as Error).message}`);
      return null;
    }
  };
  /**
   * The capacity behind an open-loop cell: the median of the pool's runs of its closed cell
   * (when the cell is not in the grid, `runs` probe runs of it, measured now).
   */
  const capacity = async (cell: ShapeCell): Promise<number> => {
    const baseServer: ShapeServerId = serverIds.includes('pool') ? 'pool' : serverIds[0]!;
    const refCell = [...CELLS, ...PROBES].find((c) => c.id === cell.capacityOf)!;
    const have = records.filter((r) => r.cell === refCell.id && r.server === baseServer && !r.failure).map((r) => r.rps);
    if (have.length > 0) return median(have);
    const probed: number[] = [];
    for (let rep = 1; rep <= runs; rep++) {
      const probe = await runOnce(0, refCell, baseServer, setup, plan(refCell));
      probes.push(probe);
      log(`capacity probe ${refCell.id} ${baseServer}: ${Math.round(probe.rps)} req/s${probe.failure ? ` (FAILED ${probe.failure})` : ''}`);
      if (!probe.failure) probed.push(probe.rps);
    }
    return probed.length > 0 ? median(probed) : 0;
  };

  const memory: MemoryRun[] = [];
  const agree: AgreeRun[] = [];
  // cold start: the shoal servers asked for (a cluster's memory shows as peak RSS in every cell), and the plain net floor
  const memoryServers: ShapeServerId[] = [...serverIds.filter((id) => id !== 'cluster'), 'net'];
  for (let rep = 1; rep <= runs; rep++) {
    for (const cell of closed) for (const id of serverIds) await attempt(rep, cell, id);
  }
  for (const cell of open) rates[cell.id] = openRate(await capacity(cell), openFraction);
  const memoryRep = async (rep: number): Promise<void> => {
    for (const id of memoryServers) {
      try {
        const m = await memoryRun(rep, id, setup, memoryConnections);
        memory.push(m);
        log(`run ${rep} memory       ${id.padEnd(7)} ${m.opened} connections (${m.failed} failed), ${round(m.rssBeforeKiB / 1024, 1)} → ${round(m.rssAfterKiB / 1024, 1)} MiB: ${m.perConnKiB} KiB each`);
      } catch (err) {
        memory.push({ rep, server: id, connections: memoryConnections, opened: 0, failed: memoryConnections, rssBeforeKiB: 0, rssAfterKiB: 0, perConnKiB: null, mismatches: 0, openMs: 0, failure: (err as Error).message });
        log(`run ${rep} memory ${id}: FAILED ${(err as Error).message}`);
      }
    }
  };
  for (let rep = 1; rep <= runs; rep++) {
    for (const cell of open) for (const id of serverIds) await attempt(rep, cell, id, rates[cell.id]);
    if (extras.includes('memory') && rep <= memoryRuns) await memoryRep(rep);
    if (extras.includes('agree')) {
      for (const id of AGREE_CELLS) {
        const cell = CELLS.find((c) => c.id === id)!;
        // alternate which goes first, so drift of a shared machine does not favour one
        const order = rep % 2 === 1 ? (['loadgen', 'shoal-bench'] as const) : (['shoal-bench', 'loadgen'] as const);
        for (const g of order) {
          try {
            const a = await agreeRun(rep, cell, g, setup, plan(cell));
            agree.push(a);
            log(`run ${rep} agree ${id.padEnd(8)} ${g.padEnd(11)} ${Math.round(a.rps)} req/s, generator ${a.genCpu.toFixed(0)}% CPU, errors ${a.errors}, other ${a.otherCpu.toFixed(0)}%${a.failure ? ` ${a.failure}` : ''}`);
          } catch (err) {
            log(`run ${rep} agree ${id} ${g}: FAILED ${(err as Error).message}`);
          }
        }
      }
    }
  }
  // More cold-start runs than the grid's, when asked: a 10,000-connection figure lands in one
  // of two modes (V8 grows its young generation once more during the accept burst, or not).
  if (extras.includes('memory')) for (let rep = runs + 1; rep <= memoryRuns; rep++) await memoryRep(rep);

  const summaries: Summaries = {};
  for (const c of cells) {
    summaries[c.id] = {};
    for (const id of serverIds) {
      const rs = records.filter((r) => r.rep > 0 && r.cell === c.id && r.server === id && !r.failure);
      if (rs.length) summaries[c.id]![id] = summarize(rs);
    }
  }
  const date = new Date().toISOString().slice(0, 10);
  let base = `${date}-shapes-${host}`;
  for (let i = 2; existsSync(join(out, `${base}.json`)); i++) base = `${date}-shapes-${host}-${i}`;
  const results: Results = {
    date,
    host,
    commit: codeVersion(),
    ref,
    machine: { cpus: setup.n, model: cpus()[0]?.model ?? 'unknown', memoryGiB: round(totalmem() / 2 ** 30, 1), node: process.version, kernel: release() },
    calibration,
    settings: { runs, durationS, warmupS, genThreads, serverArgs: setup.serverArgs, nodeFlags: setup.nodeFlags, openFraction, memoryConnections, memoryRuns },
    servers: labels(serverIds, setup, ref?.name ?? null),
    cells: cells.map((c) => ({ ...c, kValue: kValue(c, calibration) })),
    rates,
    probes,
    summaries,
    runs: records,
    memory,
    agree,
    elapsedSeconds: (Date.now() - t0) / 1000,
  };
  const svgFile = `${base}.svg`;
  if (closed.length) writeFileSync(join(out, svgFile), heatSvg(results));
  // the README's picture: only a whole grid at full length replaces it
  const wholeGrid = !values.only && !quick && values.duration === undefined && !setup.serverArgs.length && !setup.nodeFlags.length && !ref;
  if (wholeGrid) writeFileSync(join(out, 'latest-shapes.svg'), heatSvg(results));
  writeFileSync(join(out, `${base}.json`), JSON.stringify(results, null, 1) + '\n');
  const md = markdown(results, svgFile);
  writeFileSync(join(out, `${base}.md`), md);
  log('');
  log(md);
  log(`wrote ${join(out, base)}.{json,md${closed.length ? ',svg' : ''}}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`shapes: ${(err as Error)?.stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);

