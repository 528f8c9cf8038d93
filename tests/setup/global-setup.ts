// Vitest globalSetup: real PostgreSQL and Temporal servers for the whole test run.
// DATABASE_URL / TEMPORAL_ADDRESS point the tests at servers of your own instead.
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
