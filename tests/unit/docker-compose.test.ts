import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { mailroomSearchAttributes } from '../../src/workflows/search-attributes.js';

// No Docker engine runs in CI: the compose file is checked for its shape and for what must match the code.
// `merge`: services share their environment with `<<: *mailroom-env`, as docker compose reads it.
const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), { merge: true });

describe('docker-compose.yml', () => {
  it('defines the production-like stack', () => {
    expect(Object.keys(compose.services)).toEqual(
      expect.arrayContaining(['postgres', 'temporal', 'temporal-search-attributes', 'temporal-ui', 'api', 'worker', 'receiver']),
    );
  });

  it('registers every search attribute the workflows upsert', () => {
    const registration = compose.services['temporal-search-attributes'].command.join(' ');
    for (const key of mailroomSearchAttributes) {
      if (key.type === 'KEYWORD') expect(registration).toMatch(new RegExp(`for name in [^;]*${key.name}[^;]*; do`));
      else expect(registration).toContain(`--name ${key.name} --type Bool`);
    }
  });

  it('keeps the Temporal UI, which shows customer mail, on this machine and read-only', () => {
    const ui = compose.services['temporal-ui'];
    expect(ui.ports).toEqual(['127.0.0.1:8080:8080']);
    expect(ui.environment.TEMPORAL_DISABLE_WRITE_ACTIONS).toBe('true');
  });

  it('runs the API and the worker from the project sources, as processes that get SIGTERM and stop gracefully', () => {
    expect(compose.services.api.command).toEqual(['node', '--import', 'tsx', 'src/api/server.ts']);
    expect(compose.services.worker.command).toEqual(['node', '--import', 'tsx', 'src/worker.ts']);
    for (const service of [compose.services.api, compose.services.worker]) expect(service.stop_grace_period).toBe('35s');
  });

  it('runs the SMTP receiver as the MX: port 25 published to the port it listens on, with the same settings as the API', () => {
    const receiver = compose.services.receiver;
    expect(receiver.command).toEqual(['node', '--import', 'tsx', 'src/receiver/server.ts']);
    expect(receiver.stop_grace_period).toBe('35s');
    expect(receiver.ports).toEqual([`25:${receiver.environment.SMTP_RECEIVER_PORT}`]);
    expect(receiver.environment.SMTP_RECEIVER_HOST).toBe('0.0.0.0');
    for (const name of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'INBOUND_DOMAIN', 'SECRET_KEY', 'RATE_LIMIT_INBOUND_PER_MINUTE']) {
      expect(receiver.environment[name]).toBeDefined();
      expect(receiver.environment[name]).toEqual(compose.services.api.environment[name]);
    }
  });
});
