// `npm start`: all of Mailroom on one machine with nothing to set up — the Temporal dev server
// with its Web UI, embedded PostgreSQL (PGlite), an SMTP capture for outgoing mail, the worker and
// the API — then prints where everything is. Point DATABASE_URL, SMTP_URL or TEMPORAL_ADDRESS at
// servers of your own to use those instead.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { startApiServer } from '../src/api/server.js';
import {
  deploymentOAuthClients,
  loadConfig,
  LOOPBACK_NETWORKS,
  mailboxImportLimits,
  openAiCompatibleSettings,
  webhookDeliverySettings,
} from '../src/config.js';
import { openDatabase, type Db } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { addAgentToChannel, createAccount, createChannel, createUser } from '../src/db/seed.js';
import { createIngest } from '../src/ingest/ingest.js';
import { startMailReconciler } from '../src/temporal/reconciler.js';
import { ensureRetentionSchedule } from '../src/temporal/erasure.js';
import { startWebhookDispatcher } from '../src/temporal/webhooks.js';
import { forwardingAddressOf } from '../src/domain/forwarding-address.js';
import { createConfiguredSmtpReceiver } from '../src/receiver/server.js';
import { createLogger } from '../src/logger.js';
import { SmtpCapture } from '../src/mail/smtp-capture.js';
import { createMailTransport } from '../src/mail/transport.js';
import { dataConverterFromConfig } from '../src/temporal/data-converter.js';
import { createMailroomWorker } from '../src/worker.js';
import { installTemporalRuntime } from '../src/observability/temporal-runtime.js';
import { isTemporalReachable, registerMissingSearchAttributes, startTemporalDevServer } from './servers/temporal-dev-server.js';
import { ensureTools } from './servers/tools.js';

interface DemoCredentials {
  adminApiKey: string;
  agentApiKeys: Record<string, string>;
  channel: { id: string; name: string; emailAddress: string; forwarderSecret: string };
}

const TEMPORAL_UI_PORT = 8233;

/** A demo account on first start; its keys are kept under DATA_DIR because API keys are stored hashed. */
async function demoCredentials(db: Db, dataDir: string): Promise<DemoCredentials> {
  const file = join(dataDir, 'demo-credentials.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials;
  const account = await createAccount(db, 'Demo');
  const admin = await createUser(db, {
    accountId: account.id,
    name: 'Ada Admin',
    email: 'admin@demo.mailroom.test',
    role: 'admin',
  });
  const channel = await createChannel(db, {
    accountId: account.id,
    name: 'Support',
    emailAddress: 'support@demo.mailroom.test',
    greeting: { text: 'Thanks for writing to us! We have your message and will answer soon.' },
    csat: { delaySeconds: 60 },
  });
  const agentApiKeys: Record<string, string> = {};
  for (const name of ['Alice Agent', 'Bob Agent']) {
    const agent = await createUser(db, {
      accountId: account.id,
      name,
      email: `${name.split(' ')[0]!.toLowerCase()}@demo.mailroom.test`,
      role: 'agent',
    });
    await addAgentToChannel(db, channel.id, agent.id);
    agentApiKeys[name] = agent.apiKey;
  }
  const credentials: DemoCredentials = {
    adminApiKey: admin.apiKey,
    agentApiKeys,
    channel: {
      id: channel.id,
      name: 'Support',
      emailAddress: 'support@demo.mailroom.test',
      forwarderSecret: channel.forwarderSecret,
    },
  };
  writeFileSync(file, JSON.stringify(credentials, null, 2), { mode: 0o600 });
  return credentials;
}

/**
 * The demo channel's forwarding address, `support@demo.<INBOUND_DOMAIN>`, given once (also to a demo account
 * made before the SMTP receiver existed), so that mail sent to the receiver has somewhere to go.
 */
async function demoForwardingAddress(db: Db, channelId: string, inboundDomain: string): Promise<string | null> {
  await db
    .updateTable('channels')
    .set({ forwarding_username: 'support', forwarding_subdomain: 'demo' })
    .where('id', '=', channelId)
    .where('forwarding_username', 'is', null)
    .execute()
    .catch(() => undefined); // another channel of this database took it: the demo channel stays without one
  const channel = await db.selectFrom('channels').selectAll().where('id', '=', channelId).executeTakeFirstOrThrow();
  return forwardingAddressOf(channel, inboundDomain);
}

/**
 * The embedded stack's own SECRET_KEY: random on first start and kept under DATA_DIR, so that no
 * published development key ever signs survey links or encrypts passwords.
 */
function developmentSecretKey(dataDir: string): string {
  const file = join(dataDir, 'secret-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = randomBytes(32).toString('base64url');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

async function main() {
  const dataDir = resolve(process.env.DATA_DIR || '.data');
  mkdirSync(dataDir, { recursive: true });
  // Everything runs on this machine: the embedded stack may reach loopback servers (the SMTP capture, a local IMAP).
  const config = loadConfig({
    ...process.env,
    SECRET_KEY: process.env.SECRET_KEY || developmentSecretKey(dataDir),
    ALLOWED_PRIVATE_NETWORKS: process.env.ALLOWED_PRIVATE_NETWORKS ?? LOOPBACK_NETWORKS.join(','),
    // The dev server's Web UI decodes histories through the API's codec endpoint, from the browser.
    TEMPORAL_UI_ORIGIN:
      process.env.TEMPORAL_UI_ORIGIN ?? `http://127.0.0.1:${TEMPORAL_UI_PORT},http://localhost:${TEMPORAL_UI_PORT}`,
  });
  const logger = createLogger(config.LOG_LEVEL);
  // Ctrl+C and SIGTERM are handled at the end (the SDK would otherwise shut the worker down on its own).
  await installTemporalRuntime({ logger, shutdownSignals: [] });
  const graceMs = config.SHUTDOWN_GRACE_SECONDS * 1000;
  const stops: Array<() => Promise<unknown> | unknown> = [];

  let temporalUiUrl: string | undefined;
  if (!process.env.TEMPORAL_ADDRESS && (await isTemporalReachable(config.TEMPORAL_ADDRESS))) {
    // A dev server left running by an earlier start (or one of your own): use it as it is.
    logger.info({ address: config.TEMPORAL_ADDRESS }, 'using the Temporal server already running there');
    const added = await registerMissingSearchAttributes(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE);
    if (added.length > 0) logger.info({ added }, 'registered search attributes the running server lacked');
    temporalUiUrl = `http://127.0.0.1:${TEMPORAL_UI_PORT}`;
  } else if (!process.env.TEMPORAL_ADDRESS) {
    await ensureTools(['temporal']);
    const [host, port] = config.TEMPORAL_ADDRESS.split(':');
    const server = await startTemporalDevServer({
      port: Number(port),
      uiPort: TEMPORAL_UI_PORT,
      dbFile: join(dataDir, 'temporal.db'),
      // What Temporal stores is encrypted: the UI shows it decoded by the API (for a browser on this machine).
      codecEndpoint: `http://${config.HOST}:${config.PORT}/codec`,
      log: true,
    });
    if (host !== '127.0.0.1' && host !== 'localhost') logger.warn('the dev server listens on 127.0.0.1 only');
    temporalUiUrl = server.uiUrl;
    stops.push(server.stop);
  }

  const db = await openDatabase(config);
  await migrateToLatest(db);
  stops.unshift(() => db.destroy());

  let capture: SmtpCapture | undefined;
  let smtpUrl = config.SMTP_URL;
  if (!smtpUrl) {
    capture = new SmtpCapture();
    smtpUrl = (await capture.listen(config.SMTP_CAPTURE_PORT)).url;
    stops.unshift(() => capture!.close());
  }

  const dataConverter = dataConverterFromConfig(config);
  const temporal = new Client({
    connection: await Connection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
    dataConverter,
  });
  const ingest = createIngest({ db, temporal, inboundDomain: config.INBOUND_DOMAIN });
  const api = await startApiServer(
    { db, temporal, ingest, config, logger, capture, codecFromLoopback: true },
    { port: config.PORT, host: config.HOST, shutdownGraceMs: graceMs },
  );

  const worker = await createMailroomWorker({
    connection: await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
    dataConverter,
    deps: {
      db,
      ingest,
      inboundDomain: config.INBOUND_DOMAIN,
      mail: createMailTransport(smtpUrl, { allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS }),
      publicUrl: config.PUBLIC_URL,
      secretKey: config.SECRET_KEY,
      allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS,
      openAiCompatible: openAiCompatibleSettings(config),
      mailboxImports: mailboxImportLimits(config),
      oauthClients: deploymentOAuthClients(config),
      webhooks: { ...webhookDeliverySettings(config), temporal },
    },
    shutdownGraceTime: graceMs,
  });
  await startMailReconciler(temporal);
  await ensureRetentionSchedule(temporal);
  await startWebhookDispatcher(temporal);
  const running = worker.run();

  // Mailroom's own MX for the inbound domain, on loopback here.
  const receiver = createConfiguredSmtpReceiver(config, { db, ingest, logger });
  const smtpReceiver = await receiver.listen(config.SMTP_RECEIVER_PORT, config.SMTP_RECEIVER_HOST);
  stops.unshift(() => receiver.close());

  const demo = await demoCredentials(db, dataDir);
  const forwardingAddress = await demoForwardingAddress(db, demo.channel.id, config.INBOUND_DOMAIN);
  const inbound = `${api.url}/v1/channels/${demo.channel.id}/inbound`;
  console.log(`
Mailroom is running.

  API                 ${api.url}            (docs: ${api.url}/docs, OpenAPI: ${api.url}/openapi.json)
  Temporal UI         ${temporalUiUrl ?? '(your own Temporal server)'}
  Temporal frontend   ${config.TEMPORAL_ADDRESS}
  Database            ${config.DATABASE_URL ? 'DATABASE_URL' : `embedded PGlite in ${join(dataDir, 'pglite')}`}
  Outgoing mail       ${capture ? `captured by ${smtpUrl}; read it at ${api.url}/v1/captured-mail` : 'SMTP_URL'}
  Inbound SMTP        ${smtpReceiver.url}   (the MX of ${config.INBOUND_DOMAIN}${config.SMTP_RECEIVER_TLS_CERT_FILE ? ', with STARTTLS' : ''})
  Metrics             ${api.url}/metrics   (Prometheus: Mailroom's and the worker's; readiness: ${api.url}/ready)

Demo channel "${demo.channel.name}" <${demo.channel.emailAddress}>
  Inbound endpoint    ${inbound}
  Forwarding address  ${forwardingAddress ?? '(none: another channel has support@demo)'}
  Forwarder secret    ${demo.channel.forwarderSecret}
  Admin API key       ${demo.adminApiKey}
${Object.entries(demo.agentApiKeys)
  .map(([name, key]) => `  ${`${name} API key`.padEnd(20)}${key}`)
  .join('\n')}

Send a mail:
  curl -H 'Authorization: Bearer ${demo.channel.forwarderSecret}' -H 'Content-Type: message/rfc822' \\
       --data-binary @tests/fixtures/eml/customer-question.eml ${inbound}
${
  forwardingAddress
    ? `or deliver it over SMTP to the forwarding address:
  curl ${smtpReceiver.url} --mail-from ann@example.com --mail-rcpt ${forwardingAddress} \\
       --upload-file tests/fixtures/eml/customer-question.eml
`
    : ''
}
Press Ctrl+C to stop.
`);

  // As `npm run api` and `npm run worker` stop: requests and activities in flight may finish within
  // SHUTDOWN_GRACE_SECONDS; a second Ctrl+C does not wait.
  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal, graceSeconds: config.SHUTDOWN_GRACE_SECONDS }, 'stopping; Ctrl+C again to stop at once');
    worker.shutdown();
    await Promise.all([running, api.close()]);
    for (const stop of stops) await stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
