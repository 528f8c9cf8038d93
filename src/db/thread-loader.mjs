// A worker thread starts without the loaders of the thread that made it: from TypeScript sources (tsx for
// npm start, vitest for the tests) tsx is registered here before the entry is imported; a build compiled to
// JavaScript imports its entry directly.
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
