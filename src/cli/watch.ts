/**
 * `shoal start --watch`: reload the handler (server.reload(), the hot reload) when a
 * source file under the handler's directory changes — the handler itself or a module
 * it imports from there. Changes are debounced (an editor's save is several events);
 * node_modules, dist and dot-directories are ignored. A file that fails to load keeps
 * the running code: server.reload() logs why, and the next change tries again.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../options.js';
import type { ShoalServer } from '../server.js';

/** Quiet time after the last change before reloading, ms. */
export const WATCH_DEBOUNCE_MS = 150;
const SOURCE = /\.(?:[cm]?[jt]s|json)$/i;
const IGNORED_DIRS = new Set(['node_modules', 'dist']);

/** Whether a path relative to the watched root is a source file worth a reload. */
export function watched(relative: string): boolean {
  const parts = relative.split(sep);
  if (parts.some((p, i) => IGNORED_DIRS.has(p) || (i < parts.length - 1 && p.startsWith('.')))) return false;
  return SOURCE.test(relative);
}

/** Start watching; returns a function that stops. Stops by itself when the server closes. */
export function watchHandler(server: ShoalServer, logger: Logger, debounceMs = WATCH_DEBOUNCE_MS): () => void {
  const root = dirname(fileURLToPath(server.options.handlerUrl));
  const changed = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let reloading = false;
  let again = false;

  const reload = (): void => {
    timer = null;
    if (reloading) {
      again = true; // changes during a reload: one more once it is done
      return;
    }
    const files = [...changed];
    changed.clear();
    reloading = true;
    logger.info({ changed: files }, 'watch: files changed, reloading');
    server.reload().then(
      () => {},
      () => {}, // server.reload() logged why; the running code serves on
    ).finally(() => {
      reloading = false;
      if (again) {
        again = false;
        reload();
      }
    });
  };

  let watcher: FSWatcher;
  try {
    watcher = watch(root, { recursive: true, persistent: false }, (_event, name) => {
      if (name === null || !watched(name.toString())) return;
      changed.add(name.toString());
      if (timer) clearTimeout(timer);
      timer = setTimeout(reload, debounceMs);
    });
  } catch (err) {
    logger.error({ err, root }, 'watch: cannot watch the handler directory');
    return () => {};
  }
  watcher.on('error', (err) => logger.warn({ err, root }, 'watch: watcher error'));
  logger.info({ root }, 'watch: reloading the handler when files under its directory change');
  const stop = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
    watcher.close();
  };
  server.once('closing', stop);
  return stop;
}
