// Vitest globalSetup: real PostgreSQL and Temporal servers for the whole test run.
// DATABASE_URL / TEMPORAL_ADDRESS point the tests at servers of your own instead.
import { readFileSync } from 'node:fs';
import type {} from 'vitest'; // brings vitest's types into the program, so the augmentation below resolves
import type { TestProject } from 'vitest/node';
import { startPostgres } from '../../scripts/servers/postgres.js';
import { startTemporalDevServer } from '../../scripts/servers/temporal-dev-server.js';
import { ensureTools, timeSkippingServerPath } from '../../scripts/servers/tools.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** postgres:// URL of a server the tests may create databases on. */
    databaseUrl: string;
    /** host:port of a Temporal frontend with Mailroom's search attributes registered. */
    temporalAddress: string;
    /** For TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } }). */
    timeSkippingServerPath: string;
  }
}

export default async function setup({ provide }: TestProject) {
  warnOnOlderNode();
  await ensureTools();
  const stops: Array<() => Promise<void>> = [];
  const teardown = async () => {
    for (const stop of stops.reverse()) await stop();
  };

  try {
    let databaseUrl = process.env.DATABASE_URL;
    if (!databaseUrl) {
      const postgres = await startPostgres();
      stops.push(postgres.stop);
      databaseUrl = postgres.url;
    }

    let temporalAddress = process.env.TEMPORAL_ADDRESS;
    if (!temporalAddress) {
      const temporal = await startTemporalDevServer();
      stops.push(temporal.stop);
      temporalAddress = temporal.address;
    }

    provide('databaseUrl', databaseUrl);
    provide('temporalAddress', temporalAddress);
    provide('timeSkippingServerPath', timeSkippingServerPath());
  } catch (err) {
    await teardown();
    throw err;
  }
  return teardown;
}

/** `npm test` and `npm run vitest` run the suite on the Node LTS of package.json (scripts/node-lts.sh); a bare npx does not. */
function warnOnOlderNode(): void {
  const engines = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).engines.node as string;
  const required = Number(/\d+/.exec(engines)?.[0]);
  if (Number(process.versions.node.split('.')[0]) < required) {
    console.warn(
      `The tests run on Node ${process.version}, older than package.json's ${engines}: npm test runs them on the LTS.`,
    );
  }
}
