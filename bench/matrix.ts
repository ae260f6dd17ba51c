/**
 * The benchmark matrix (issue 3): `npm run bench:matrix [-- --quick]`.
 *
 * For every run r, scenario s and server v (interleaved: r is the outer loop, so slow
 * drift of the machine spreads over every server alike), start a fresh server on a free
 * loopback port, drive it with `shoal bench --json` in a child process, sample the server's
 * RSS and CPU from procfs, stop it with SIGTERM. A cell is the median of the runs.
 * Then the idle-memory run, the targets, and bench/results/<date>-<host>.{json,md}
 * plus two SVG charts (also copied to bench/results/latest-*.svg for the README).
 *
 * Everything is bounded: every child has a deadline and is killed (by its pid) past it.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { availableParallelism, cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildMessage } from '../src/bench/message.js';
import type { BenchResult } from '../src/bench/run.js';
import { loadCalibration } from './calibration.js';
import { CLI, CLUSTER, HANDLER, ROOT, codeVersion, guardChildren, killAll, runShoalBench, sleep, startServer as startCommand } from './harness.js';
import type { RunningServer } from './harness.js';
import { Sampler, sampleTree } from './proc.js';
import { SCENARIOS, checkTargets, kOf, servers } from './scenarios.js';
import type { Calibration, Cell, Scenario, ServerId, ServerSpec, TargetCheck } from './scenarios.js';
import { median, round } from './stats.js';
import { COLORS, barPanels, compact, latencyPanels } from './svg.js';

const HELP = `Usage: node dist/bench/matrix.js [options]   (npm run bench:matrix -- [options])

  --quick                 2 s runs, 0.5 s warm-up (default 5 s, 1 s)
  --runs <n>              interleaved runs per cell, median reported (default 3)
  --duration <s>          seconds measured per run
  --warmup <s>            seconds of warm-up per run
  --only <ids>            scenarios, comma separated (${SCENARIOS.map((s) => s.id).join(', ')})
  --servers <ids>         inline,pool,cluster (default all)
  --idle-connections <n>  connections of the idle-memory run (default 10000; 0 = skip)
  --recalibrate           measure K again even if bench/results has this machine's calibration
  --out <dir>             results directory (default bench/results)
  -h, --help
`;

// ---------------------------------------------------------------------------- children

/** The whole matrix never runs longer than this (each child has its own, shorter deadline). */
guardChildren('matrix', 90 * 60_000);

function startServer(id: ServerId, n: number): Promise<RunningServer> {
  const common = ['--handler', HANDLER, '--host', '127.0.0.1', '--port', '0', '--max-connections', '20000'];
  const args =
    id === 'cluster'
      ? [CLUSTER, '--processes', String(n), ...common]
      : [CLI, 'start', '--workers', id === 'inline' ? '0' : String(n), '--log-level', 'info', ...common];
  return startCommand({ label: id, args });
}

// ---------------------------------------------------------------------------- one cell

interface RunRecord {
  rep: number;
  scenario: string;
  server: ServerId;
  k: number;
  bench: {
    rps: number;
    total: number;
    sent: number;
    answered: number;
    latency: BenchResult['latency'];
    errors: BenchResult['errors'];
    generatorCpu: number;
    generatorElu: number[];
    generatorSaturated: boolean;
  } | null;
  benchExit: number | null;
  benchStderr: string;
  serverStats: { baselineRssMiB: number; peakRssMiB: number; cpu: number; processes: number; stopMs: number; stopCode: number | null; killed: boolean };
  /** CPU of everything else on the machine during the window, % of one core: other load makes the cell noisy. */
  otherCpu: number;
  loadAvg1: number;
  warnings: string[];
}

function log(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

async function runCell(rep: number, s: Scenario, server: ServerSpec, k: number, n: number, duration: number, warmup: number): Promise<RunRecord> {
  const loadAvg1 = round(loadavg()[0] ?? 0, 2);
  const srv = await startServer(server.id, n);
  const sampler = new Sampler(srv.pid).start(200);
  await sleep(300); // let the pool settle before measuring its baseline
  const baseline = sampleTree(srv.pid);
  const args = [`127.0.0.1:${srv.port}`, '-c', String(s.connections), '-p', String(s.pipelining), '-s', String(s.size), '-k', String(k), '-d', `${duration}ms`];
  if (warmup > 0) args.push('--warmup', `${warmup}ms`);
  if (s.rate > 0) args.push('-R', String(s.rate));
  const b = await runShoalBench(args, duration + warmup + 60_000);
  sampler.stop();
  const stopped = await srv.stop();
  const r = b.result;
  let cpu = 0;
  let otherCpu = 0;
  const peak = sampler.peakRssKiB();
  if (r) {
    const from = Date.parse(r.startedAt) + r.warmup * 1000;
    const c = sampler.cpuPercent(from, from + r.duration * 1000);
    cpu = c.tree;
    otherCpu = Math.max(0, c.system - c.tree - r.generator.cpu);
  }
  return {
    rep,
    scenario: s.id,
    server: server.id,
    k,
    bench: r
      ? {
          rps: r.requests.perSecond,
          total: r.requests.total,
          sent: r.requests.sent,
          answered: r.requests.answered,
          latency: r.latency,
          errors: r.errors,
          generatorCpu: r.generator.cpu,
          generatorElu: r.generator.elu,
          generatorSaturated: r.generator.saturated,
        }
      : null,
    benchExit: b.code,
    benchStderr: b.stderr.slice(0, 1000),
    serverStats: {
      baselineRssMiB: round(baseline.rssKiB / 1024, 1),
      peakRssMiB: round(peak / 1024, 1),
      cpu: round(cpu, 1),
      processes: baseline.processes,
      stopMs: stopped.ms,
      stopCode: stopped.code,
      killed: stopped.killed,
    },
    warnings: srv.warnings.slice(0, 20),
    otherCpu: round(otherCpu, 1),
    loadAvg1,
  };
}

function toCell(runs: RunRecord[]): Cell {
  const ok = runs.filter((r) => r.bench !== null);
  const rps = ok.map((r) => r.bench!.rps);
  return {
    runs: runs.length,
    rps: round(median(rps), 1),
    rpsMin: round(Math.min(...rps, Infinity) === Infinity ? 0 : Math.min(...rps), 1),
    rpsMax: round(Math.max(0, ...rps), 1),
    p50: round(median(ok.map((r) => r.bench!.latency.p50)), 3),
    p99: round(median(ok.map((r) => r.bench!.latency.p99)), 3),
    p99_9: round(median(ok.map((r) => r.bench!.latency.p99_9)), 3),
    peakRssMiB: round(median(runs.map((r) => r.serverStats.peakRssMiB)), 1),
    cpu: round(median(runs.map((r) => r.serverStats.cpu)), 1),
    genCpu: round(median(ok.map((r) => r.bench!.generatorCpu)), 1),
    genSaturated: ok.some((r) => r.bench!.generatorSaturated),
    errors: ok.reduce((a, r) => a + r.bench!.errors.total, 0) + (runs.length - ok.length),
    serverWarnings: runs.reduce((a, r) => a + r.warnings.length, 0),
    otherCpu: round(median(runs.map((r) => r.otherCpu)), 1),
  };
}

// ---------------------------------------------------------------------------- idle memory

interface IdleRecord {
  server: ServerId;
  connections: number;
  opened: number;
  failed: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  perConnKiB: number;
  processes: number;
  warnings: number;
}

/** Open `count` connections, each answering one 64 B echo, then hold them idle and weigh the server. */
async function idleRun(server: ServerSpec, n: number, count: number): Promise<IdleRecord> {
  const srv = await startServer(server.id, n);
  const sockets: Socket[] = [];
  let failed = 0;
  try {
    await sleep(1000);
    const med = async (k: number): Promise<number> => {
      const xs: number[] = [];
      for (let i = 0; i < k; i++) {
        xs.push(sampleTree(srv.pid).rssKiB);
        await sleep(200);
      }
      return median(xs);
    };
    const msg = buildMessage({ protocol: 'bench', iterations: 0, size: 64, framing: { type: 'length' }, maxFrame: 1 << 20 });
    const request = Buffer.from(msg.request);
    const replyLen = msg.reply.length;
    const one = (): Promise<void> =>
      new Promise<void>((resolve) => {
        const s = netConnect({ host: '127.0.0.1', port: srv.port, noDelay: true });
        let got = 0;
        const t = setTimeout(() => {
          failed++;
          s.destroy();
          resolve();
        }, 15_000);
        s.once('connect', () => s.write(request));
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= replyLen) {
            clearTimeout(t);
            sockets.push(s);
            resolve();
          }
        });
        s.on('error', () => {
          clearTimeout(t);
          failed++;
          resolve();
        });
      });
    const WAVE = 500;
    // Warm the server first with the same kind of connections, then let them go: the
    // figure is what a held connection costs, not one-off growth on first use (JIT code,
    // the worker isolates' first heap expansion), which would be divided over `count`.
    const warmCount = Math.min(2000, count);
    for (let i = 0; i < warmCount; i += WAVE) await Promise.all(Array.from({ length: Math.min(WAVE, warmCount - i) }, one));
    for (const s of sockets.splice(0)) s.destroy();
    failed = 0;
    await sleep(2000);
    const before = await med(5);
    for (let i = 0; i < count; i += WAVE) await Promise.all(Array.from({ length: Math.min(WAVE, count - i) }, one));
    await sleep(2000);
    const after = await med(5);
    const opened = sockets.length;
    return {
      server: server.id,
      connections: count,
      opened,
      failed,
      rssBeforeMiB: round(before / 1024, 1),
      rssAfterMiB: round(after / 1024, 1),
      perConnKiB: opened > 0 ? round((after - before) / opened, 2) : 0,
      processes: sampleTree(srv.pid).processes,
      warnings: srv.warnings.length,
    };
  } finally {
    for (const s of sockets) s.destroy();
    await sleep(200);
    await srv.stop();
  }
}

// ---------------------------------------------------------------------------- output

interface Results {
  date: string;
  host: string;
  commit: string;
  machine: { cpus: number; model: string; memoryGiB: number; node: string; kernel: string };
  calibration: Calibration;
  settings: { runs: number; durationMs: number; warmupMs: number; generator: string };
  servers: ServerSpec[];
  scenarios: Array<Scenario & { kValue: number }>;
  runs: RunRecord[];
  cells: Record<string, Partial<Record<ServerId, Cell>>>;
  idle: Partial<Record<ServerId, IdleRecord>>;
  targets: TargetCheck[];
  elapsedSeconds: number;
}

function markdown(r: Results, charts: { throughput: string; latency: string }): string {
  const lines: string[] = [];
  const n = r.machine.cpus;
  lines.push(`# shoal benchmark matrix — ${r.date}, ${r.host}, code ${r.commit}`, '');
  lines.push(
    `Machine: ${n} cores (${r.machine.model}), ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, Linux ${r.machine.kernel}. ` +
      `Load from \`shoal bench\` (${r.settings.generator}) on the same machine, over loopback.`,
  );
  lines.push(
    `K calibrated with the bench-protocol handler: ${r.calibration.stepUs} µs per SHA-256 step, so ~100 µs = K ${r.calibration.k100}, ~1 ms = K ${r.calibration.k1ms}.`,
  );
  lines.push(
    `Each cell: median of ${r.settings.runs} interleaved runs of ${r.settings.durationMs / 1000} s (after ${r.settings.warmupMs / 1000} s warm-up), a fresh server per run; ` +
      `req/s = verified replies in the measured window / its length. Server CPU in % of one core (all threads and processes), RSS = peak of all processes.`,
    '',
  );
  const others = r.runs.map((x) => x.otherCpu);
  const noisy = others.filter((x) => x > 20).length;
  lines.push(
    `Other load on the machine during the measured windows (CPU not used by the server or the generator, % of one core): ` +
      `median ${median(others).toFixed(0)}%, max ${Math.max(0, ...others).toFixed(0)}%; ${noisy} of ${others.length} runs had more than 20%` +
      (noisy > 0 ? ' — those cells are noisy, CPU-bound ones most (the cores were shared).' : '.'),
    '',
  );
  lines.push('| scenario | server | req/s | runs min–max | × inline | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | server CPU % | generator CPU % | other load % | errors |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const s of r.scenarios) {
    const row = r.cells[s.id] ?? {};
    const base = row.inline?.rps;
    for (const v of r.servers) {
      const c = row[v.id];
      if (!c) continue;
      const x = base ? `${(c.rps / base).toFixed(2)}×` : 'n/a';
      lines.push(
        `| ${s.title} (${s.note}${s.kValue ? `, K=${s.kValue}` : ''}) | ${v.label} | ${Math.round(c.rps).toLocaleString('en-US')} | ` +
          `${compact(c.rpsMin)}–${compact(c.rpsMax)} | ${x} | ${c.p50.toFixed(3)} | ${c.p99.toFixed(3)} | ${c.p99_9.toFixed(3)} | ` +
          `${c.peakRssMiB.toFixed(0)} | ${c.cpu.toFixed(0)} | ${c.genCpu.toFixed(0)}${c.genSaturated ? ' (saturated)' : ''} | ${c.otherCpu.toFixed(0)} | ${c.errors}${c.serverWarnings ? ` (${c.serverWarnings} server warnings)` : ''} |`,
      );
    }
  }
  lines.push('', '## Targets (issue 3, this 2-core machine)', '', '| target | measured | met |', '|---|---|---|');
  for (const t of r.targets) lines.push(`| ${t.text} | ${t.measured} | ${t.met === null ? 'not measured' : t.met ? 'yes' : '**no**'} |`);
  const idle = Object.values(r.idle);
  if (idle.length > 0) {
    lines.push('', '## Idle connections', '', '| server | connections held | RSS before MiB | RSS after MiB | RSS per connection KiB |', '|---|--:|--:|--:|--:|');
    for (const i of idle) {
      const label = r.servers.find((s) => s.id === i.server)!.label;
      lines.push(`| ${label} | ${i.opened}${i.failed ? ` (${i.failed} failed)` : ''} | ${i.rssBeforeMiB} | ${i.rssAfterMiB} | ${i.perConnKiB} |`);
    }
  }
  lines.push('', `![req/s per scenario](${charts.throughput})`, '', `![latency percentiles](${charts.latency})`, '');
  lines.push(`Matrix time: ${Math.round(r.elapsedSeconds)} s. Raw figures of every run: the .json next to this file.`, '');
  return lines.join('\n');
}

function charts(r: Results): { throughput: string; latency: string } {
  const series = r.servers.map((s, i) => ({ label: s.label, color: COLORS[i]! }));
  const throughput = barPanels(
    `shoal: req/s per scenario (${r.date}, ${r.host}, ${r.machine.cpus} cores; median of ${r.settings.runs})`,
    series,
    r.scenarios.map((s) => {
      const row = r.cells[s.id] ?? {};
      const base = row.inline?.rps;
      const values = r.servers.map((v) => row[v.id]?.rps ?? null);
      return {
        title: s.title,
        subtitle: s.note + (s.kValue ? `, K=${s.kValue}` : ''),
        values,
        labels: values.map((v) => (v === null ? 'n/a' : `${compact(v)}${base ? ` (${(v / base).toFixed(2)}×)` : ''}`)),
      };
    }),
    { unit: 'req/s (× inline)' },
  );
  const latency = latencyPanels(
    `shoal: latency percentiles per scenario (${r.date}, ${r.host})`,
    r.servers.map((s) => s.label.replace(/^shoal /, '').replace(/ \(workers:0\)/, '')),
    [
      { label: 'p50', color: COLORS[0]! },
      { label: 'p99', color: COLORS[1]! },
      { label: 'p99.9', color: COLORS[3]! },
    ],
    r.scenarios.map((s) => ({
      title: s.title,
      subtitle: s.note,
      values: r.servers.map((v) => {
        const c = r.cells[s.id]?.[v.id];
        return c ? [c.p50, c.p99, c.p99_9] : [null, null, null];
      }),
    })),
  );
  return { throughput, latency };
}

// ---------------------------------------------------------------------------- main

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      only: { type: 'string' },
      servers: { type: 'string' },
      'idle-connections': { type: 'string' },
      recalibrate: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!existsSync(CLI) || !existsSync(CLUSTER)) {
    process.stderr.write(`matrix: build first (npx tsc -p .): ${CLI} or ${CLUSTER} is missing\n`);
    return 2;
  }
  const t0 = Date.now();
  const runs = Number(values.runs ?? 3);
  const duration = Math.round(Number(values.duration ?? (values.quick ? 2 : 5)) * 1000);
  const warmup = Math.round(Number(values.warmup ?? (values.quick ? 0.5 : 1)) * 1000);
  const idleCount = Number(values['idle-connections'] ?? 10_000);
  const n = availableParallelism();
  const only = values.only ? new Set(values.only.split(',')) : null;
  const scenarios = SCENARIOS.filter((s) => !only || only.has(s.id));
  const serverIds = values.servers ? new Set(values.servers.split(',')) : null;
  const serverList = servers(n).filter((s) => !serverIds || serverIds.has(s.id));
  if (!(runs >= 1) || !(duration > 0) || scenarios.length === 0 || serverList.length === 0) {
    process.stderr.write(`matrix: nothing to run\n${HELP}`);
    return 2;
  }
  const out = values.out ?? join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '_');
  const calibration = await loadCalibration(out, host, values.recalibrate === true, log);
  log(`calibration: ${calibration.stepUs} µs/step, K(100 µs) = ${calibration.k100}, K(1 ms) = ${calibration.k1ms}`);
  const total = runs * scenarios.length * serverList.length;
  log(`matrix: ${scenarios.length} scenarios × ${serverList.length} servers × ${runs} runs = ${total} runs of ${duration / 1000} s (+${warmup / 1000} s warm-up)`);

  const records: RunRecord[] = [];
  let i = 0;
  for (let rep = 1; rep <= runs; rep++) {
    for (const s of scenarios) {
      for (const server of serverList) {
        i++;
        const k = kOf(s, calibration);
        let rec: RunRecord;
        try {
          rec = await runCell(rep, s, server, k, n, duration, warmup);
        } catch (err) {
          log(`[${i}/${total}] ${s.id} ${server.id} run ${rep}: FAILED ${(err as Error).message}`);
          continue;
        }
        records.push(rec);
        const b = rec.bench;
        log(
          `[${i}/${total}] ${s.id.padEnd(8)} ${server.id.padEnd(7)} run ${rep}: ` +
            `(other load ${rec.otherCpu.toFixed(0)}%) ` +
            (b
              ? `${compact(b.rps).padStart(7)} req/s  p50 ${b.latency.p50.toFixed(3)} ms  p99 ${b.latency.p99.toFixed(3)} ms  ` +
                `errors ${b.errors.total}  server ${rec.serverStats.cpu.toFixed(0)}% CPU ${rec.serverStats.peakRssMiB} MiB  gen ${b.generatorCpu.toFixed(0)}%`
              : `no result (bench exit ${rec.benchExit}): ${rec.benchStderr}`) +
            (rec.warnings.length ? `  [${rec.warnings.length} server warnings]` : ''),
        );
      }
    }
  }

  const cells: Results['cells'] = {};
  for (const s of scenarios) {
    cells[s.id] = {};
    for (const v of serverList) {
      const rs = records.filter((r) => r.scenario === s.id && r.server === v.id);
      if (rs.length > 0) cells[s.id]![v.id] = toCell(rs);
    }
  }

  const idle: Results['idle'] = {};
  if (idleCount > 0) {
    for (const server of serverList) {
      try {
        const r = await idleRun(server, n, idleCount);
        idle[server.id] = r;
        log(`idle ${server.id}: ${r.opened} connections (${r.failed} failed), ${r.rssBeforeMiB} → ${r.rssAfterMiB} MiB, ${r.perConnKiB} KiB each`);
      } catch (err) {
        log(`idle ${server.id}: FAILED ${(err as Error).message}`);
      }
    }
  }

  const date = new Date().toISOString().slice(0, 10);
  let base = `${date}-${host}`;
  for (let k = 2; existsSync(join(out, `${base}.json`)); k++) base = `${date}-${host}-${k}`;
  const results: Results = {
    date,
    host,
    commit: codeVersion(),
    machine: { cpus: n, model: cpus()[0]?.model ?? 'unknown', memoryGiB: round(totalmem() / 2 ** 30, 1), node: process.version, kernel: release() },
    calibration,
    settings: { runs, durationMs: duration, warmupMs: warmup, generator: '1 thread, -w 0' },
    servers: serverList,
    scenarios: scenarios.map((s) => ({ ...s, kValue: kOf(s, calibration) })),
    runs: records,
    cells,
    idle,
    targets: checkTargets(cells, idle, n),
    elapsedSeconds: (Date.now() - t0) / 1000,
  };
  const svg = charts(results);
  const files = { throughput: `${base}-throughput.svg`, latency: `${base}-latency.svg` };
  writeFileSync(join(out, `${base}.json`), JSON.stringify(results, null, 1) + '\n');
  writeFileSync(join(out, files.throughput), svg.throughput);
  writeFileSync(join(out, files.latency), svg.latency);
  writeFileSync(join(out, 'latest-throughput.svg'), svg.throughput);
  writeFileSync(join(out, 'latest-latency.svg'), svg.latency);
  const md = markdown(results, files);
  writeFileSync(join(out, `${base}.md`), md);
  log('');
  log(md);
  log(`wrote ${join(out, base)}.{json,md} and the SVG charts`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`matrix: ${(err as Error)?.stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
