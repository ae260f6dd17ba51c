/**
 * A generator thread (-w): runs one Driver over its share of the connections.
 * Protocol with the main thread (run.ts):
 *   worker -> { type: 'connected', connected, error }
 *   main   -> { type: 'run', schedule }
 *   worker -> { type: 'result', result }   then exits
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Driver } from './driver.js';
import type { DriverConfig, Schedule } from './driver.js';

interface WorkerInput {
  cfg: DriverConfig;
  counters: SharedArrayBuffer;
  base: number;
}

const { cfg, counters, base } = workerData as WorkerInput;
const port = parentPort!;
const driver = new Driver(cfg, new Float64Array(counters), base);
const { connected, error } = await driver.connect();
port.postMessage({ type: 'connected', connected, error });
port.once('message', (msg: { type: 'run'; schedule: Schedule }) => {
  driver.run(msg.schedule).then(
    (result) => {
      port.postMessage({ type: 'result', result });
      port.close();
    },
    (err: unknown) => {
      throw err;
    },
  );
});
