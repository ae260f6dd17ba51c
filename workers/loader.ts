/**
 * Imports the user's handler module. JavaScript goes through Node's own import();
 * TypeScript (.ts, .mts, .cts) through tsx, an optional peer dependency, registered
 * in this thread on first use and only for the handler's module graph (a tsx
 * namespace: nothing else this thread imports is transformed). tsx turns on source
 * maps, so a handler's stack trace names its .ts lines.
 */
import { HandlerLoadError } from '../src/errors.js';

const TYPESCRIPT = /\.(?:ts|mts|cts)$/i;

/** tsx's namespaced import, once per thread. */
type ScopedImport = (specifier: string, parentURL: string) => Promise<unknown>;
let tsxImport: Promise<ScopedImport> | null = null;

export function isTypeScript(url: string): boolean {
  return TYPESCRIPT.test(new URL(url).pathname);
}

const NAMESPACE = 'shoal-handler';

async function loadTsx(url: string): Promise<ScopedImport> {
  let esm: { register(options: { namespace: string }): { import: ScopedImport } };
  let cjs: { register(options: { namespace: string }): unknown };
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
  // A .ts file outside a "type": "module" package is CommonJS to tsx: its require()s
  // (of './lib.js' meaning lib.ts) need tsx's CommonJS hooks too, in the same namespace
  // (as tsx's own tsImport() does).
  cjs.register({ namespace: NAMESPACE });
  return esm.register({ namespace: NAMESPACE }).import;
}

/**
 * A TypeScript file that its package.json does not mark "type": "module" is CommonJS
 * to tsx: its exports arrive as the namespace's default, marked __esModule. Unwrap
 * that, so `export default` and `export const routes` mean what they say.
 */
function unwrapInterop(mod: Record<string, unknown>): Record<string, unknown> {
  const d = mod.default as Record<string, unknown> | null | undefined;
  if (d !== null && typeof d === 'object' && d.__esModule === true) return d;
  return mod;
}

/** The handler module's namespace; throws what import() throws, or HandlerLoadError when tsx is missing. */
export async function importHandler(url: string): Promise<Record<string, unknown>> {
  if (!isTypeScript(url)) return (await import(url)) as Record<string, unknown>;
  tsxImport ??= loadTsx(url);
  let scoped: ScopedImport;
  try {
    scoped = await tsxImport;
  } catch (err) {
    tsxImport = null; // installed later (a reload after `npm install tsx`): try again
    throw err;
  }
  return unwrapInterop((await scoped(url, import.meta.url)) as Record<string, unknown>);
}
