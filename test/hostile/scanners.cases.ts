import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Connection, ShoalError } from '../../dist/src/index.js';
import { start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { rawConnect, waitFor, within } from '../helpers/wire.js';
import { withCanary } from './canary.js';
import { HOSTILE_HANDLER } from './child.js';

// A port scanner: connections that open and go away without a byte, by FIN or by
// RST. The server must forget them (descriptors back to where they were) and still
// say who they were: a 'connectionClose' listener that logs the peer is how an
// operator finds the scanner.

describe('port scanners (in-process server, workers: 2)', () => {
  let s: Running;
  const closes: { address: string; port: number; code: string | null }[] = [];
  beforeAll(async () => {
    s = await start({ handler: HOSTILE_HANDLER, workers: 2 });
    s.server.on('connectionClose', (c: Connection, e: ShoalError | null) => closes.push({ address: c.remoteAddress, port: c.remotePort, code: e?.code ?? null }));
  });
  afterAll(() => s?.close());

  it('100 connections that send nothing (50 FIN, 50 RST): each close names its peer; descriptors back to baseline', async () => {
    await withCanary(s.port, async () => {
      // Server and scanners share this process: both ends of every socket count here.
      const fds = (): number => readdirSync('/proc/self/fd').length;
      const base = fds();
      const open = s.server.connections.size;
      const peers = await Promise.all(Array.from({ length: 100 }, () => rawConnect(s.port)));
      const ports = new Set(peers.map((p) => p.socket.localPort!));
      await waitFor(() => s.server.connections.size === open + 100, 'the server holding all 100 connections');
      peers.forEach((p, i) => (i % 2 === 0 ? p.socket.end() : p.socket.resetAndDestroy()));
      await Promise.all(peers.filter((_, i) => i % 2 === 0).map((p) => within(p.closed, 5000, 'a FIN answered')));
      await waitFor(() => fds() === base, `connections back to ${base} (now ${fds()})`, 5000);
      const ours = closes.filter((c) => ports.has(c.port));
      expect(ours.length, `closes naming a scanner port (of ${closes.length}: ${JSON.stringify(closes.slice(0, 3))})`).toBe(100);
      expect(ours.every((c) => c.address === '127.0.0.1')).toBe(true);
      expect(ours.every((c) => c.code === null)).toBe(true); // nothing was wrong on the wire
    });
  });
});
