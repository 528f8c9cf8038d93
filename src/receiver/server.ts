import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { lazyTemporalClient } from '../api/server.js';
import { ConfigError, loadConfig, RATE_LIMIT_DEFAULTS, type Config } from '../config.js';
import { openDatabase } from '../db/connection.js';
import { migrateToLatest } from '../db/migrate.js';
import { createIngest, type Ingest } from '../ingest/ingest.js';
import { createLogger, type Logger } from '../logger.js';
import { dataConverterFromConfig } from '../temporal/data-converter.js';
import { startMetricsServer } from '../observability/metrics-endpoint.js';
import type { Db } from '../db/connection.js';
import { createSmtpReceiver, type SmtpReceiver } from './smtp-receiver.js';

// `npm run receiver`: the SMTP receiver as a process of its own, the inbound domain's MX.

/** The STARTTLS key and certificate the configuration names, read once; a setting alone or a file missing is a ConfigError. */
export function receiverTls(config: Config): { key: Buffer; cert: Buffer } | undefined {
  const { SMTP_RECEIVER_TLS_KEY_FILE: keyFile, SMTP_RECEIVER_TLS_CERT_FILE: certFile } = config;
  if (!keyFile && !certFile) return undefined;
  if (!keyFile || !certFile) {
    throw new ConfigError('SMTP_RECEIVER_TLS_KEY_FILE and SMTP_RECEIVER_TLS_CERT_FILE go together: set both or neither');
  }
  const read = (name: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new ConfigError(`${name}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  return { key: read('SMTP_RECEIVER_TLS_KEY_FILE', keyFile), cert: read('SMTP_RECEIVER_TLS_CERT_FILE', certFile) };
}

/** The receiver with the configuration's settings (not yet listening). */
export function createConfiguredSmtpReceiver(config: Config, deps: { db: Db; ingest: Ingest; logger: Logger }): SmtpReceiver {
  const tls = receiverTls(config);
  return createSmtpReceiver({
    ...deps,
    inboundDomain: config.INBOUND_DOMAIN,
    maxInboundBytes: config.MAX_INBOUND_BYTES,
    perChannelPerMinute: config.RATE_LIMIT_INBOUND_PER_MINUTE ?? RATE_LIMIT_DEFAULTS.RATE_LIMIT_INBOUND_PER_MINUTE,
    ...(config.SMTP_RECEIVER_HOSTNAME ? { hostname: config.SMTP_RECEIVER_HOSTNAME } : {}),
    ...(tls ? { tls } : {}),
    maxClients: config.SMTP_RECEIVER_MAX_CLIENTS,
    maxRecipients: config.SMTP_RECEIVER_MAX_RECIPIENTS,
    maxBadRecipients: config.SMTP_RECEIVER_MAX_BAD_RECIPIENTS,
    socketTimeoutMs: config.SMTP_RECEIVER_TIMEOUT_SECONDS * 1000,
    maxBufferedBytes: config.SMTP_RECEIVER_MAX_BUFFERED_BYTES,
    closeTimeoutMs: config.SHUTDOWN_GRACE_SECONDS * 1000,
  });
}

async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  const db = await openDatabase(config);
  await migrateToLatest(db);
  // Connects on first use: the receiver starts, and answers 451 while Temporal is away.
  const temporal = lazyTemporalClient(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE, dataConverterFromConfig(config));
  const ingest = createIngest({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, inboundDomain: config.INBOUND_DOMAIN });
  const receiver = createConfiguredSmtpReceiver(config, { db, ingest, logger });
  const { url } = await receiver.listen(config.SMTP_RECEIVER_PORT, config.SMTP_RECEIVER_HOST);
  const metrics =
    config.METRICS_PORT === undefined
      ? undefined
      : await startMetricsServer({ port: config.METRICS_PORT, host: config.METRICS_HOST, token: config.METRICS_TOKEN });
  logger.info(
    { url, starttls: Boolean(config.SMTP_RECEIVER_TLS_CERT_FILE), ...(metrics ? { metrics: metrics.url } : {}) },
    'SMTP receiver listening',
  );

  // A mail cut off by the stop is not answered 250: its sender delivers it again, and the store dedupes.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'SMTP receiver stopping');
    setTimeout(() => process.exit(1), config.SHUTDOWN_GRACE_SECONDS * 1000 + 5_000).unref();
    receiver
      .close()
      .then(async () => {
        await metrics?.close();
        await db.destroy();
        await temporal.connection.close();
        logger.info('SMTP receiver stopped');
        process.exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'SMTP receiver failed to stop cleanly');
        process.exit(1);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(1);
  });
}
