// The stack scripts/fuzz-api.sh fuzzes: a database of its own on the cached PostgreSQL server, a Temporal dev
// server, the worker and the API on a free port, and an account with an admin, an agent, two channels and a
// conversation. Writes { baseUrl, adminApiKey, ... } as JSON to the file named by its one argument once it is
// ready, then runs until SIGINT/SIGTERM and removes everything it made.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { pino } from 'pino';
import { startApiServer } from '../src/api/server.js';
import { LOOPBACK_NETWORKS } from '../src/config.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { addAgentToChannel, createAccount, createChannel, createUser } from '../src/db/seed.js';
import { createIngest } from '../src/ingest/ingest.js';
import { SmtpCapture } from '../src/mail/smtp-capture.js';
import { createMailTransport } from '../src/mail/transport.js';
import { dataConverterFromConfig } from '../src/temporal/data-converter.js';
import { createMailroomWorker } from '../src/worker.js';
import { installTemporalRuntime } from '../src/observability/temporal-runtime.js';
import { startPostgres } from './servers/postgres.js';
import { createScratchDatabase } from './servers/scratch-database.js';
import { startTemporalDevServer } from './servers/temporal-dev-server.js';

const readyFile = process.argv[2];
if (!readyFile) {
  console.error('usage: tsx scripts/fuzz-stack.ts <ready-file>');
  process.exit(2);
}

const SECRET_KEY = `fuzz-${randomBytes(24).toString('hex')}`;
const taskQueue = 'mailroom-fuzz';
const stops: Array<() => Promise<unknown>> = [];

async function stopAll() {
  for (const stop of stops.splice(0).reverse()) {
    try {
      await stop();
    } catch (error) {
      console.error('fuzz-stack: cleanup step failed:', error);
    }
  }
}

async function createDatabase(serverUrl: string) {
  const database = await createScratchDatabase(serverUrl, { prefix: 'mailroom_fuzz', maxConnections: 20 });
  stops.push(() => database.drop());
  await migrateToLatest(database.db);
  return database.db;
}

async function main() {
  // Server errors are what the fuzz run looks for: log them, with their stacks, to stderr.
  const logger = pino({ level: 'warn', base: { service: 'mailroom' } }, pino.destination(2));
  await installTemporalRuntime({ logger, metrics: false });

  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const postgres = await startPostgres();
    stops.push(postgres.stop);
    databaseUrl = postgres.url;
  }
  const db = await createDatabase(databaseUrl);

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  if (!temporalAddress) {
    const temporalServer = await startTemporalDevServer();
    stops.push(temporalServer.stop);
    temporalAddress = temporalServer.address;
  }

  const capture = new SmtpCapture();
  const smtp = await capture.listen();
  stops.push(() => capture.close());
  const dataConverter = dataConverterFromConfig({ SECRET_KEY });
  const temporal = new Client({ connection: await Connection.connect({ address: temporalAddress }), dataConverter });
  stops.push(() => temporal.connection.close());
  const ingest = createIngest({ db, temporal, taskQueue });
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest,
      taskQueue,
      capture,
      config: {
        SECRET_KEY,
        MAX_INBOUND_BYTES: 1024 * 1024,
        PUBLIC_URL: 'http://127.0.0.1',
        INBOUND_DOMAIN: 'inbound.mailroom.test',
        // Like `npm start`: every server of this stack runs on loopback.
        ALLOWED_PRIVATE_NETWORKS: LOOPBACK_NETWORKS,
        // The fuzzer sends thousands of requests a minute with one key: limited, most would be 429s.
        RATE_LIMIT_INBOUND_PER_MINUTE: 0,
        RATE_LIMIT_SURVEY_PER_MINUTE: 0,
        RATE_LIMIT_API_KEY_PER_MINUTE: 0,
      },
      logger,
    },
    { port: 0, host: '127.0.0.1' },
  );
  stops.push(() => api.close());

  const workerConnection = await NativeConnection.connect({ address: temporalAddress });
  stops.push(() => workerConnection.close());
  const worker = await createMailroomWorker({
    connection: workerConnection,
    taskQueue,
    dataConverter,
    deps: {
      db,
      ingest,
      mail: createMailTransport(smtp.url, { allowedPrivateNetworks: LOOPBACK_NETWORKS }),
      publicUrl: api.url,
      secretKey: SECRET_KEY,
      allowedPrivateNetworks: LOOPBACK_NETWORKS,
    },
  });
  const running = worker.run();
  stops.push(async () => {
    worker.shutdown();
    await running;
  });

  const account = await createAccount(db, 'Fuzz');
  const admin = await createUser(db, { accountId: account.id, name: 'Ada Admin', email: 'ada@fuzz.example', role: 'admin' });
  const agent = await createUser(db, { accountId: account.id, name: 'Alice Agent', email: 'alice@fuzz.example', role: 'agent' });
  const channel = await createChannel(db, { accountId: account.id, name: 'Support', emailAddress: 'support@fuzz.example' });
  await addAgentToChannel(db, channel.id, agent.id);
  // The forwarder endpoint's own channel: the fuzz run keeps its secret and settings as they are.
  const inbound = await createChannel(db, { accountId: account.id, name: 'Forwarded', emailAddress: 'forwarded@fuzz.example' });
  await addAgentToChannel(db, inbound.id, agent.id);

  // One conversation through the real path, answered by the agent, so that reads find data.
  const posted = await fetch(`${api.url}/v1/channels/${channel.id}/inbound`, {
    method: 'POST',
    headers: { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
    body: [
      'From: Carla Customer <carla@customer.example>',
      'To: support@fuzz.example',
      'Subject: Where is my parcel?',
      'Message-ID: <fuzz-seed-1@customer.example>',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'It has been a week.',
      '',
    ].join('\r\n'),
  });
  if (posted.status !== 202) throw new Error(`seeding: inbound mail answered ${posted.status}: ${await posted.text()}`);
  const { conversationId } = (await posted.json()) as { conversationId: string };
  const deadline = Date.now() + 60_000;
  while (
    (await db.selectFrom('conversations').select('stage').where('id', '=', conversationId).executeTakeFirst())?.stage !==
    'assigned'
  ) {
    if (Date.now() > deadline) throw new Error('seeding: the conversation was not assigned within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const replied = await fetch(`${api.url}/v1/conversations/${conversationId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agent.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'It is on its way.' }),
  });
  if (replied.status !== 201) console.error(`fuzz-stack: seeding reply answered ${replied.status}: ${await replied.text()}`);

  const adminKey = await db.selectFrom('api_keys').select('id').where('user_id', '=', admin.id).executeTakeFirstOrThrow();
  writeFileSync(
    readyFile!,
    JSON.stringify({
      baseUrl: api.url,
      adminApiKey: admin.apiKey,
      adminUserId: admin.id,
      adminKeyId: adminKey.id,
      agentApiKey: agent.apiKey,
      accountId: account.id,
      channelId: channel.id,
      inboundChannelId: inbound.id,
      forwarderSecret: inbound.forwarderSecret,
      conversationId,
    }),
    { mode: 0o600 },
  );
  console.error(`fuzz-stack: ready at ${api.url}`);
}

let stopping = false;
async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  await stopAll();
  process.exit(code);
}
process.once('SIGINT', () => void shutdown(0));
process.once('SIGTERM', () => void shutdown(0));

main().catch(async (error) => {
  console.error('fuzz-stack: failed to start:', error);
  await shutdown(1);
});
