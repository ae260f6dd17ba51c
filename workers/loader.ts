/**
 * Imports the user's handler module. JavaScript goes through Node's own import();
 * TypeScript (.ts, .mts, .cts) through tsx, an optional peer dependency, registered
 * in this thread on first use and only for the handler's module graph (a tsx
 * namespace: nothing else this thread imports is transformed). tsx turns on source
 * maps, so a handler's stack trace names its .ts lines.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HandlerLoadError } from '../src/errors.js';

const TYPESCRIPT = /\.(?:ts|mts|cts)$/i;
const NAMESPACE = 'shoal-handler';

interface Tsx {
  /** ES module TypeScript: tsx's namespaced import(). */
  import(specifier: string, parentURL: string): Promise<unknown>;
  /** CommonJS TypeScript: tsx's namespaced require(). */
  require(id: string, fromFile: string): unknown;
}

let tsx: Promise<Tsx> | null = null;

export function isTypeScript(url: string): boolean {
  return TYPESCRIPT.test(new URL(url).pathname);
}

async function loadTsx(url: string): Promise<Tsx> {
  type Api<T> = { register(options: { namespace: string }): T };
  let esm: Api<Pick<Tsx, 'import'>>;
  let cjs: Api<Pick<Tsx, 'require'>>;
  try {
    // Variable specifiers: tsx is optional, and the build must not need its types.
    const esmApi = 'tsx/esm/api';
    const cjsApi = 'tsx/cjs/api';
    esm = (await import(esmApi)) as typeof esm;
    cjs = (await import(cjsApi)) as typeof cjs;
  } catch (err) {
    const code = (err as { code?: string })?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new HandlerLoadError(
        `the handler ${url} is TypeScript, which needs tsx: npm install tsx (or compile the handler to JavaScript and pass the .js file)`,
        err,
      );
    }
    throw err;
  }
  const scopedImport = esm.register({ namespace: NAMESPACE }).import;
  const scopedRequire = cjs.register({ namespace: NAMESPACE }).require;
  return { import: scopedImport, require: scopedRequire };
}

/**
 * Whether Node treats this TypeScript file as CommonJS: .cts always, .mts never, .ts
 * when the nearest package.json does not say "type": "module" (Node's own rule).
 */
export function isCommonJs(file: string): boolean {
  if (/\.cts$/i.test(file)) return true;
  if (/\.mts$/i.test(file)) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    let text: string | null = null;
    try {
      text = readFileSync(join(dir, 'package.json'), 'utf8');
    } catch {
      // none here: look further up
    }
    if (text !== null) {
      try {
        return (JSON.parse(text) as { type?: unknown }).type !== 'module';
      } catch {
        return true;
      }
    }
    if (dirname(dir) === dir) return true;
  }
}

/** Node's CommonJS module cache (shared by every require of this thread). */
const requireCache = createRequire(import.meta.url).cache;

/**
 * CommonJS TypeScript goes through tsx's require(): on Node 20, tsx's import() of a
 * CommonJS .ts file runs it from a data: URL that source maps do not reach. A
 * reload on the main thread (a `?shoal-reload=N` query) evicts the handler file from
 * the cache first, so it is evaluated again (what it requires stays cached, as with
 * import()).
 */
function requireCommonJs(t: Tsx, url: string): Record<string, unknown> {
  const file = fileURLToPath(url);
  if (new URL(url).search !== '') {
    for (const key of Object.keys(requireCache)) if (key.split('?')[0] === file) delete requireCache[key];
  }
  const exports = t.require(file, import.meta.url) as Record<string, unknown>;
  // An ES module compiled to CommonJS (`export default` in a .ts file) says so with __esModule.
  if (exports !== null && typeof exports === 'object' && exports.__esModule === true) return exports;
  return { default: exports };
}

/** The handler module's namespace; throws what loading throws, or HandlerLoadError when tsx is missing. */
export async function importHandler(url: string): Promise<Record<string, unknown>> {
  if (!isTypeScript(url)) return (await import(url)) as Record<string, unknown>;
  tsx ??= loadTsx(url);
  let t: Tsx;
  try {
    t = await tsx;
  } catch (err) {
    tsx = null; // installed later (a reload after `npm install tsx`): try again
    throw err;
  }
  if (isCommonJs(fileURLToPath(url))) return requireCommonJs(t, url);
  return (await t.import(url, import.meta.url)) as Record<string, unknown>;
}
