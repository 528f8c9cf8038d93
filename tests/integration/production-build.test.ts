import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { freePort } from '../../scripts/servers/tools.js';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { createTestDatabase } from '../support/database.js';
import {
  copiesOf,
  finalStage,
  imageCommand,
  imageHealthCheck,
  readDockerfile,
  stageNamed,
  type Instruction,
} from '../support/dockerfile.js';
import { postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { startNodeProcess, type MailroomProcess } from '../support/mailroom-process.js';
import { seedSupportTeam, TEST_INBOUND_DOMAIN, TEST_SECRET_KEY } from '../support/stack.js';

// The production image, as far as it goes without a Docker engine: the Dockerfile's two stages followed in two
// folders — its COPY instructions copied from this checkout, its `npm ci` stood in for by this checkout's
// node_modules (all of it for the build; without tsx or any other development dependency for the image), its
// build RUN run — and the processes started in the image's folder with the Dockerfile's and docker-compose's own
// commands, by plain node: no loader, no NODE_OPTIONS, no TypeScript file anywhere to run.

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const GREETING = 'Thanks for writing, the compiled worker greets you.';
const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });

/** Runs a command to its end: its exit code and the tail of its output. */
async function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString('utf8')).slice(-8192));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode ?? -1));
  });
  return { code, output };
}

/** A stage's COPY instructions into `target` (its WORKDIR): from this checkout, or from the named stage's folder. */
function applyCopies(stage: Instruction[], target: string, stages: Record<string, string>): void {
  for (const { from, sources, destination } of copiesOf(stage)) {
    for (const source of sources) {
      // `COPY --from=build /app/dist ./dist`: a path in the other stage, whose WORKDIR is /app.
      const path = from ? join(stages[from]!, relative('/app', source)) : join(REPO_ROOT, source);
      const into =
        destination.endsWith('/') && !statSync(path).isDirectory()
          ? join(target, destination, basename(source))
          : join(target, destination);
      cpSync(path, into, { recursive: true });
    }
  }
}

/** A stage's RUN instructions but its first, `npm ci`, which the caller stands in for; fails on the first that fails. */
async function runAfterInstall(stage: Instruction[], cwd: string, install: RegExp): Promise<void> {
  const [first, ...rest] = stage.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args);
  expect(first).toMatch(install);
  for (const command of rest) {
    // On the Node LTS, as the image's node is: this checkout's wrapper puts it first on PATH if this node is older.
    const result = await run('bash', [join(REPO_ROOT, 'scripts', 'node-lts.sh'), 'sh', '-c', command], { cwd, env: process.env });
    if (result.code !== 0) throw new Error(`RUN ${command} exited with ${result.code}:\n${result.output}`);
  }
}

/**
 * node_modules as `npm ci --omit=dev` leaves it: every package of this checkout but those the lock file marks as
 * needed for development only (tsx, TypeScript, vitest and what only they depend on).
 */
function linkProductionDependencies(app: string): void {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const source = join(REPO_ROOT, 'node_modules');
  const target = join(app, 'node_modules');
  const developmentOnly = (name: string) => lock.packages[`node_modules/${name}`]?.dev === true;
  mkdirSync(target);
  for (const entry of readdirSync(source)) {
    if (entry.startsWith('.')) continue; // .bin (tsx's among them), npm's own files
    if (entry.startsWith('@')) {
      mkdirSync(join(target, entry));
      for (const name of readdirSync(join(source, entry))) {
        if (!developmentOnly(`${entry}/${name}`)) symlinkSync(join(source, entry, name), join(target, entry, name));
      }
    } else if (!developmentOnly(entry)) {
      symlinkSync(join(source, entry), join(target, entry));
    }
  }
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

/** A command of the image (`node ...`) as this test runs it: this node binary, the same arguments. */
function nodeArguments(command: string[]): string[] {
  expect(command[0]).toBe('node');
  return command.slice(1);
}

describe('the production build, started as the image starts it', () => {
  let build: string;
  let app: string;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let capture: SmtpCapture;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let env: NodeJS.ProcessEnv;
  const processes: MailroomProcess[] = [];
  let api: MailroomProcess;
  let apiUrl: string;

  beforeAll(async () => {
    const dockerfile = readDockerfile();
    build = mkdtempSync(join(tmpdir(), 'mailroom-image-build-'));
    const buildStage = stageNamed(dockerfile, 'build');
    applyCopies(buildStage, build, {});
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(build, 'node_modules'));
    await runAfterInstall(buildStage, build, /^npm ci\b/); // npm run build

    app = mkdtempSync(join(tmpdir(), 'mailroom-image-'));
    const imageStage = finalStage(dockerfile);
    applyCopies(imageStage, app, { build });
    linkProductionDependencies(app);
    await runAfterInstall(imageStage, app, /^npm ci --omit=dev\b/);

    database = await createTestDatabase();
    team = await seedSupportTeam(database.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: GREETING },
    });
    capture = new SmtpCapture();
    const smtp = await capture.listen();
    // Only what the image's environment has: no NODE_OPTIONS (no --import of a loader), nothing of vitest's.
    env = {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATABASE_URL: database.url,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: `mailroom-test-${randomUUID()}`,
      SMTP_URL: smtp.url,
      ALLOWED_PRIVATE_NETWORKS: LOOPBACK_NETWORKS.join(','),
      SECRET_KEY: TEST_SECRET_KEY,
      INBOUND_DOMAIN: TEST_INBOUND_DOMAIN,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
    };
    api = startNodeProcess(nodeArguments(imageCommand()), { cwd: app, env });
    processes.push(api);
    apiUrl = String((await api.waitForLog('API listening')).url);
  }, 15 * 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((child) => child.stop()));
    await capture?.close();
    await database?.drop();
    for (const dir of [build, app]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is compiled JavaScript only, with the workflow bundle prebuilt next to the compiled worker, and no tsx to load', () => {
    const files = filesUnder(join(app, 'dist'));
    expect(files.filter((file) => !/\.(js|js\.map|mjs)$/.test(file))).toEqual([]);
    expect(files).toEqual(
      expect.arrayContaining([
        join('src', 'api', 'server.js'),
        join('src', 'worker.js'),
        join('src', 'receiver', 'server.js'),
        join('src', 'workflow-bundle.js'),
        join('src', 'mail', 'parse-worker-loader.mjs'),
        join('src', 'db', 'thread-loader.mjs'),
        join('src', 'db', 'embedded-database-thread.js'),
      ]),
    );
    expect(existsSync(join(app, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'typescript'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'esbuild'))).toBe(false); // tsx's, development only too
    expect(env.NODE_OPTIONS).toBeUndefined();
  });

  it("answers /health and /ready, and passes the Dockerfile's HEALTHCHECK", async () => {
    expect(api.child.spawnargs).toEqual([process.execPath, ...nodeArguments(imageCommand())]);
    const health = await fetch(`${apiUrl}/health`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${apiUrl}/ready`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({
      status: 200,
      body: { status: 'ready', checks: { postgresql: 'up', temporal: 'up' } },
    });
    const { command } = imageHealthCheck();
    const port = new URL(apiUrl).port;
    expect(await run(process.execPath, nodeArguments(command), { cwd: app, env: { ...env, PORT: port } })).toMatchObject({
      code: 0,
    });
    // The same check fails where nothing listens: it does test something.
    const refused = await run(process.execPath, nodeArguments(command), { cwd: app, env: { ...env, PORT: '1' } });
    expect(refused.code).not.toBe(0);
  });

  it("greets a mail posted to the compiled API from the compiled worker running the prebuilt bundle (docker-compose's command and health check)", async () => {
    const workerEnv = { ...env, METRICS_PORT: String(await freePort()) };
    const worker = startNodeProcess(nodeArguments(compose.services.worker.command), { cwd: app, env: workerEnv });
    processes.push(worker);
    expect(await worker.waitForLog('worker started')).toMatchObject({ workflowBundle: 'prebuilt' });
    const [kind, ...check] = compose.services.worker.healthcheck.test as string[];
    expect(kind).toBe('CMD');
    expect(await run(process.execPath, nodeArguments(check), { cwd: app, env: workerEnv })).toMatchObject({ code: 0 });
    const messageId = `production-build-${randomUUID()}@example.com`;
    const posted = await postMail(apiUrl, team.channel, customerMail({ messageId, subject: 'Compiled?' }));
    expect(posted.status).toBe(202);
    const greeting = await capture.waitFor((mail) => mail.inReplyTo === `<${messageId}>`, 120_000);
    expect(greeting.envelope.to).toEqual(['ann@example.com']);
    expect(greeting.text).toContain(GREETING);
  });

  it('runs the compiled API on the embedded database without DATABASE_URL: its thread starts without tsx', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-image-data-'));
    try {
      const { DATABASE_URL: _postgres, ...embeddedEnv } = env;
      const embedded = startNodeProcess(nodeArguments(imageCommand()), { cwd: app, env: { ...embeddedEnv, DATA_DIR: dataDir } });
      processes.push(embedded);
      const url = String((await embedded.waitForLog('API listening')).url);
      const ready = await fetch(`${url}/ready`);
      expect({ status: ready.status, body: await ready.json() }).toEqual({
        status: 200,
        body: { status: 'ready', checks: { postgresql: 'up', temporal: 'up' } },
      });
      await embedded.stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("starts the compiled SMTP receiver (docker-compose's command) and passes docker-compose's health check for it", async () => {
    const receiverEnv = { ...env, SMTP_RECEIVER_HOST: '127.0.0.1', SMTP_RECEIVER_PORT: '0' };
    const receiver = startNodeProcess(nodeArguments(compose.services.receiver.command), { cwd: app, env: receiverEnv });
    processes.push(receiver);
    const port = new URL(String((await receiver.waitForLog('SMTP receiver listening')).url)).port;
    const [kind, ...check] = compose.services.receiver.healthcheck.test as string[];
    expect(kind).toBe('CMD');
    const checked = await run(process.execPath, nodeArguments(check), {
      cwd: app,
      env: { ...receiverEnv, SMTP_RECEIVER_PORT: port },
    });
    expect(checked).toMatchObject({ code: 0 });
  });
});
