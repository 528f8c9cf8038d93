import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { receiverTls } from '../../src/receiver/server.js';

const dir = mkdtempSync(join(tmpdir(), 'receiver-config-'));
const keyFile = join(dir, 'key.pem');
const certFile = join(dir, 'cert.pem');
writeFileSync(keyFile, 'KEY');
writeFileSync(certFile, 'CERT');
const config = (env: Record<string, string>) => loadConfig({ SECRET_KEY: 'k'.repeat(32), ...env });

describe("the SMTP receiver's settings", () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('offers no STARTTLS without key and certificate, also when docker-compose passes them empty', () => {
    expect(receiverTls(config({}))).toBeUndefined();
    expect(receiverTls(config({ SMTP_RECEIVER_TLS_KEY_FILE: '', SMTP_RECEIVER_TLS_CERT_FILE: '' }))).toBeUndefined();
  });

  it('reads both files', () => {
    const tls = receiverTls(config({ SMTP_RECEIVER_TLS_KEY_FILE: keyFile, SMTP_RECEIVER_TLS_CERT_FILE: certFile }));
    expect(tls).toEqual({ key: Buffer.from('KEY'), cert: Buffer.from('CERT') });
  });

  it('refuses one file without the other, and names a file it cannot read', () => {
    expect(() => receiverTls(config({ SMTP_RECEIVER_TLS_KEY_FILE: keyFile }))).toThrow(
      new ConfigError('SMTP_RECEIVER_TLS_KEY_FILE and SMTP_RECEIVER_TLS_CERT_FILE go together: set both or neither'),
    );
    const missing = join(dir, 'missing.pem');
    expect(() => receiverTls(config({ SMTP_RECEIVER_TLS_KEY_FILE: keyFile, SMTP_RECEIVER_TLS_CERT_FILE: missing }))).toThrow(
      `SMTP_RECEIVER_TLS_CERT_FILE: cannot read ${missing} (ENOENT)`,
    );
  });

  it('has the defaults the README states', () => {
    expect(config({})).toMatchObject({
      SMTP_RECEIVER_PORT: 2526,
      SMTP_RECEIVER_HOST: '127.0.0.1',
      SMTP_RECEIVER_MAX_CLIENTS: 200,
      SMTP_RECEIVER_MAX_RECIPIENTS: 50,
      SMTP_RECEIVER_MAX_BAD_RECIPIENTS: 10,
      SMTP_RECEIVER_TIMEOUT_SECONDS: 120,
      SMTP_RECEIVER_MAX_BUFFERED_BYTES: 256 * 1024 * 1024,
    });
  });
});
