// `npm run record-histories`: records the workflow histories that the replay test
// (tests/replay/histories.test.ts) replays. Runs the tests that take each workflow through its paths
// with RECORD_HISTORIES set (tests/support/history-recorder.ts saves what they ran), on a Temporal dev
// server of its own that suggests continue-as-new after 500 events instead of 4096: a conversation that
// continues as new then makes a history of hundreds of events, not thousands.
// Arguments replace the default test files, e.g. `npm run record-histories -- tests/workflows/sla.test.ts`.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isTemporalReachable, registerMissingSearchAttributes } from './servers/temporal-dev-server.js';
import { ensureTools, freePort, temporalCliPath } from './servers/tools.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const histories = process.env.RECORD_HISTORIES ?? path.join(root, 'tests/fixtures/histories');
const SUGGEST_CONTINUE_AS_NEW_EVENTS = 500;

// The conversation on the time-skipping server, every stage and escalation; on the dev server the
// mailbox (also waiting for its OAuth grant to be connected again), the assignment queue, a conversation that
// continues as new, the mailbox imports, the webhook dispatcher and lanes, a contact's erasure and the retention sweep.
const DEFAULT_TESTS = [
  'tests/workflows/',
  'tests/integration/assignment.test.ts',
  'tests/integration/imap-mailbox.test.ts',
  'tests/integration/oauth-mailbox.test.ts',
  'tests/integration/long-conversation.test.ts',
  'tests/integration/mailbox-import.test.ts',
  'tests/integration/webhooks.test.ts',
  'tests/integration/erasure.test.ts',
];

async function startDevServer(): Promise<{ address: string; server: ChildProcess }> {
  await ensureTools(['temporal']);
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const server = spawn(
    temporalCliPath(),
    [
      ...['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'error'],
      ...['--sqlite-pragma', 'journal_mode=WAL', '--sqlite-pragma', 'synchronous=OFF'],
      ...['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_CONTINUE_AS_NEW_EVENTS}`],
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  process.once('exit', () => server.kill('SIGKILL'));
  for (const deadline = Date.now() + 60_000; !(await isTemporalReachable(address)); await sleep(200)) {
    if (server.exitCode !== null || Date.now() > deadline) throw new Error(`the Temporal dev server on ${address} did not start`);
  }
  await registerMissingSearchAttributes(address);
  return { address, server };
}

async function main() {
  mkdirSync(histories, { recursive: true });
  const { address, server } = await startDevServer();
  const tests = process.argv.slice(2);
  const vitest = spawn(
    'npx',
    ['vitest', 'run', '--project', 'workflows', '--project', 'integration', ...(tests.length ? tests : DEFAULT_TESTS)],
    {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, RECORD_HISTORIES: histories, TEMPORAL_ADDRESS: address },
    },
  );
  const [code] = await once(vitest, 'exit');
  server.kill('SIGTERM');
  await once(server, 'exit');

  console.log(`Histories in ${path.relative(root, histories) || histories}:`);
  for (const type of readdirSync(histories).sort()) {
    const files = readdirSync(path.join(histories, type)).filter((file) => file.endsWith('.json'));
    const bytes = files.reduce((sum, file) => sum + statSync(path.join(histories, type, file)).size, 0);
    console.log(`  ${type}: ${files.length} (${Math.round(bytes / 1024)} KB)`);
  }
  process.exitCode = code ?? 1;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
