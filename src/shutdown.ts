import type { Logger } from './options.js';
import type { ShoalServer } from './server.js';

export const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const;

/**
 * The seed's model_02, without its trap: the first signal starts a graceful
 * close (bounded by drainTimeout, so no read or write can hold it open) and
 * exits 0; a second signal exits at once with status 1.
 * Returns a function that removes the handlers.
 */
export function handleSignals(
  server: ShoalServer,
  logger: Logger,
  exit: (code: number) => void = (code) => process.exit(code),
): () => void {
  let received: string | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received !== null) {
      logger.warn({ signal, first: received }, 'second signal: exiting now');
      exit(1);
      return;
    }
    received = signal;
    logger.info({ signal, connections: server.connections.size }, 'recv quit signal: shutting down gracefully');
    server.close().then(
      (report) => {
        logger.info({ ...report }, 'all done');
        exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  for (const s of SHUTDOWN_SIGNALS) process.on(s, onSignal);
  return () => {
    for (const s of SHUTDOWN_SIGNALS) process.off(s, onSignal);
  };
}

/**
 * SIGHUP re-reads what can change under a running server: today the TLS
 * certificate and key (server.reloadTls()). A failure is logged by the server
 * and the current certificate stays. Returns a function that removes the handler.
 */
export function handleReloadSignal(server: ShoalServer, logger: Logger): () => void {
  const onHup = (): void => {
    if (server.options.tls === null) {
      logger.info({ signal: 'SIGHUP' }, 'SIGHUP: nothing to reload (no TLS)');
      return;
    }
    try {
      server.reloadTls();
    } catch {
      // logged by reloadTls(); the old certificate keeps serving
    }
  };
  process.on('SIGHUP', onHup);
  return () => {
    process.off('SIGHUP', onHup);
  };
}
