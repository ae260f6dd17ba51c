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
 * Everything SIGHUP reloads, in one place: the TLS certificate and key when the
 * server has TLS (server.reloadTls()), and the handler code (server.reload(), the
 * hot reload). Both are tried; it rejects with the first failure (each is logged by
 * the server, and what failed keeps its old version serving).
 */
export async function reloadAll(server: ShoalServer): Promise<void> {
  const failures: unknown[] = [];
  if (server.options.tls !== null) {
    try {
      server.reloadTls();
    } catch (err) {
      failures.push(err);
    }
  }
  try {
    await server.reload();
  } catch (err) {
    failures.push(err);
  }
  if (failures.length > 0) throw failures[0];
}

/**
 * SIGHUP under the CLI: reloadAll(), never exit. Signals that arrive during a reload
 * are served one after another (reload() is serialized). Returns a function that
 * removes the handler.
 */
export function handleReloadSignal(server: ShoalServer, logger: Logger): () => void {
  const onHup = (): void => {
    logger.info({ signal: 'SIGHUP', tls: server.options.tls !== null }, 'recv SIGHUP: reloading');
    reloadAll(server).catch((err: unknown) => {
      // Logged by reload() / reloadTls(); the running code (or certificate) keeps serving.
      logger.debug({ code: (err as { code?: string }).code }, 'SIGHUP: a reload did not apply');
    });
  };
  process.on('SIGHUP', onHup);
  return () => {
    process.off('SIGHUP', onHup);
  };
}
