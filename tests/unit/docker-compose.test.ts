import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { mailroomSearchAttributes } from '../../src/workflows/search-attributes.js';
import { finalStage, imageCommand, imageHealthCheck, readDockerfile } from '../support/dockerfile.js';

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

  it('runs the compiled API and worker with plain node, as processes that get SIGTERM and stop gracefully', () => {
    expect(compose.services.api.command).toEqual(imageCommand());
    expect(compose.services.worker.command).toEqual(['node', 'dist/src/worker.js']);
    for (const service of [compose.services.api, compose.services.worker]) expect(service.stop_grace_period).toBe('35s');
  });

  it("gives the worker and the receiver health checks of their own (the image's asks the API's port, which they lack)", () => {
    const worker = compose.services.worker;
    expect(worker.healthcheck.test.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(worker.healthcheck.test[3]).toContain('process.env.METRICS_PORT');
    expect(worker.environment.METRICS_PORT).toBeGreaterThan(0);
    const receiver = compose.services.receiver;
    expect(receiver.healthcheck.test.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(receiver.healthcheck.test[3]).toContain('process.env.SMTP_RECEIVER_PORT');
    expect(compose.services.api.healthcheck).toBeUndefined(); // the image's: GET /health
  });

  it('runs the SMTP receiver as the MX: port 25 published to the port it listens on, with the same settings as the API', () => {
    const receiver = compose.services.receiver;
    expect(receiver.command).toEqual(['node', 'dist/src/receiver/server.js']);
    expect(receiver.stop_grace_period).toBe('35s');
    expect(receiver.ports).toEqual([`25:${receiver.environment.SMTP_RECEIVER_PORT}`]);
    expect(receiver.environment.SMTP_RECEIVER_HOST).toBe('0.0.0.0');
    for (const name of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'INBOUND_DOMAIN', 'SECRET_KEY', 'RATE_LIMIT_INBOUND_PER_MINUTE']) {
      expect(receiver.environment[name]).toBeDefined();
      expect(receiver.environment[name]).toEqual(compose.services.api.environment[name]);
    }
    // What Temporal stores is read by every process: all of them encrypt and decrypt with the same keys.
    for (const service of [compose.services.worker, receiver]) {
      expect(service.environment.PAYLOAD_ENCRYPTION_KEYS).toBeDefined();
      expect(service.environment.PAYLOAD_ENCRYPTION_KEYS).toEqual(compose.services.api.environment.PAYLOAD_ENCRYPTION_KEYS);
    }
  });
});

describe('Dockerfile', () => {
  const instructions = readDockerfile();
  const runtime = finalStage(instructions);
  const engines = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).engines.node as string;

  it('builds and runs on the Node LTS that package.json requires', () => {
    const nodeMajor = /^>=(\d+)/.exec(engines)?.[1];
    expect(nodeMajor).toBe('24');
    const bases = instructions.filter((instruction) => instruction.keyword === 'FROM').map((from) => from.args.split(' ')[0]);
    expect(bases.length).toBeGreaterThanOrEqual(2); // a build stage and the image that runs
    for (const base of bases) expect(base).toBe(`node:${nodeMajor}-bookworm-slim`);
  });

  it('runs the build in a stage of its own and ships only its output and the production dependencies', () => {
    const build = instructions.filter((instruction) => instruction.stage === 0);
    expect(build.map((instruction) => instruction.args)).toContain('npm run build');
    const runs = runtime.filter((instruction) => instruction.keyword === 'RUN').map((run) => run.args);
    expect(runs.some((run) => run.startsWith('npm ci --omit=dev'))).toBe(true);
    expect(runs.join(' ')).not.toContain('npm run build');
    const copies = runtime.filter((instruction) => instruction.keyword === 'COPY').map((copy) => copy.args);
    expect(copies).toContain('--from=build /app/dist ./dist');
    expect(copies.join(' ')).not.toMatch(/\bsrc\b/); // no sources in the image that runs
  });

  it('starts the compiled API with plain node (no tsx, no loader), as the unprivileged user node', () => {
    expect(imageCommand()).toEqual(['node', 'dist/src/api/server.js']);
    const users = runtime.filter((instruction) => instruction.keyword === 'USER');
    expect(users.at(-1)?.args).toBe('node');
    // USER comes before CMD and after everything that needs root.
    const userAt = runtime.indexOf(users.at(-1)!);
    expect(runtime.slice(userAt).some((instruction) => ['RUN', 'COPY'].includes(instruction.keyword))).toBe(false);
  });

  it("checks the API's liveness with node's fetch (the slim image has no curl), on the port it listens on", () => {
    const { options, command } = imageHealthCheck();
    expect(command.slice(0, 2)).toEqual(['node', '-e']);
    expect(command[2]).toContain('fetch(');
    expect(command[2]).toContain('process.env.PORT || 3000');
    expect(command[2]).toContain('/health');
    expect(Object.keys(options)).toEqual(expect.arrayContaining(['interval', 'timeout', 'start-period', 'retries']));
  });
});
