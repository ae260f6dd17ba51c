/**
 * `npm run bench:loadgen -- [loadgen options] [HOST:]PORT`: build the native generator if
 * needed, then run it with these arguments (its exit status is this one's).
 */
import { spawnSync } from 'node:child_process';
import { buildLoadgen } from './loadgen.js';

let bin: string;
try {
  bin = buildLoadgen();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
const r = spawnSync(bin, process.argv.slice(2), { stdio: 'inherit' });
process.exit(r.status ?? 1);
