#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ShoalError } from './errors.js';
import { START_HELP, startMain } from './cli/start.js';

const HELP = `Usage: shoal <command> [options]

Commands
  start    start a server (shoal start --help)
  bench    load-test a server over TCP (shoal bench --help)

  -h, --help       this help
  -v, --version    the version
`;

type Command = (argv: string[]) => Promise<number>;

async function loadCommand(name: string): Promise<Command | null> {
  if (name === 'start') return startMain;
  if (name === 'bench') {
    // Loaded on demand: the server path never pays for the bench's dependencies.
    const spec = './bench/cli.js';
    const mod = (await import(spec)) as { benchMain: Command };
    return mod.benchMain;
  }
  return null;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(rest[0] === 'start' ? START_HELP : HELP);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '-v' || cmd === '--version') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const command = await loadCommand(cmd);
  if (!command) {
    process.stderr.write(`shoal: unknown command '${cmd}'\n\n${HELP}`);
    return 2;
  }
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const code = err instanceof ShoalError ? err.code : 'ERROR';
    process.stderr.write(`shoal: ${code}: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(err instanceof ShoalError && err.code === 'SHOAL_INVALID_OPTION' ? 2 : 1);
  },
);
