// The production build (`npm run build`): the sources compiled to JavaScript that plain `node` runs, and the
// workflow bundle prebuilt next to the compiled worker, so that no process transpiles or bundles when it starts.
// Usage: tsx scripts/build.ts [--out-dir <dir>]   (default: dist; the Dockerfile and the tests run its output)
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { PREBUILT_WORKFLOW_BUNDLE_PATH, workflowBundleOptions } from '../src/worker.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { 'out-dir': { type: 'string', default: 'dist' } } });
const outDir = resolve(root, values['out-dir']);
// It is emptied first: inside the repository only dist/, outside it no folder that holds the repository.
const inRepository = !relative(root, outDir).startsWith('..');
if (inRepository ? outDir !== join(root, 'dist') : !relative(outDir, root).startsWith('..')) {
  throw new Error(`--out-dir ${outDir}: the build empties it first; name dist/ or a folder outside the repository`);
}

function compile() {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir], {
    stdio: 'inherit',
  });
  if (result.status !== 0) throw new Error(`tsc failed (exit code ${result.status})`);
}

/** What tsc does not emit but the compiled code loads at run time (the parser thread's .mjs loader). */
function copyAssets(dir: string) {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) copyAssets(path);
    else if (entry.name.endsWith('.mjs')) cpSync(join(root, path), join(outDir, path));
  }
}

/** Bundled from the sources with the options the worker would use; written where the compiled worker looks for it. */
async function writeWorkflowBundle(): Promise<string> {
  const { code } = await bundleWorkflowCode({ ...workflowBundleOptions, logger: new DefaultLogger('WARN') });
  const path = join(outDir, relative(root, PREBUILT_WORKFLOW_BUNDLE_PATH));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, code);
  return path;
}

rmSync(outDir, { recursive: true, force: true }); // nothing left over from an earlier build
compile();
copyAssets('src');
const bundle = await writeWorkflowBundle();
console.log(`build: compiled into ${outDir}, workflow bundle ${bundle}`);
