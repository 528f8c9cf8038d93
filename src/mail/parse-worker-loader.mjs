// Worker threads start without the loaders of the thread that made them: when the parser runs from
// TypeScript sources (tsx for npm start and the worker, vitest for the tests), tsx is registered
// here before the entry is imported; a build compiled to JavaScript imports its entry directly.
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
