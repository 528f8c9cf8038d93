import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { OpenAPI3 } from 'openapi-typescript';
import { servedOpenApiDocument } from '../../scripts/client-types.js';

// The contract as a client team checks it: Redocly's recommended ruleset finds nothing in the document
// the API serves, and every operation is named for the method a generator makes of it.

const redoclyCli = createRequire(import.meta.url).resolve('@redocly/cli/bin/cli.js');

interface LintProblem {
  ruleId: string;
  severity: 'error' | 'warn';
  message: string;
  location: Array<{ pointer: string }>;
}

/** Runs `redocly lint --extends recommended` on the document: offline, no telemetry, no project config. */
async function redoclyRecommended(document: unknown): Promise<LintProblem[]> {
  const directory = await mkdtemp(path.join(tmpdir(), 'mailroom-openapi-'));
  try {
    const file = path.join(directory, 'openapi.json');
    await writeFile(file, JSON.stringify(document, null, 2));
    const run = await promisify(execFile)(
      process.execPath,
      [redoclyCli, 'lint', '--extends', 'recommended', '--format', 'json', '--max-problems', '1000', file],
      {
        cwd: directory,
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
        maxBuffer: 64 * 1024 * 1024,
      },
    ).catch((error: { stdout?: string; stderr?: string }) => {
      // Problems make it exit 1; the report is on stdout all the same.
      if (error.stdout) return { stdout: error.stdout };
      throw new Error(`redocly lint did not run: ${error.stderr ?? String(error)}`);
    });
    return (JSON.parse(run.stdout) as { problems: LintProblem[] }).problems;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;

/** Every operation of the document with the name of its route, e.g. `GET /v1/conversations`. */
function operations(document: OpenAPI3) {
  return Object.entries(document.paths ?? {}).flatMap(([route, item]) =>
    '$ref' in item
      ? []
      : METHODS.flatMap((method) => {
          const operation = item[method];
          return operation && !('$ref' in operation) ? [{ name: `${method.toUpperCase()} ${route}`, operation }] : [];
        }),
  );
}

describe('the OpenAPI document, linted as a client team would', () => {
  let document: OpenAPI3;

  beforeAll(async () => {
    // As a production deployment serves it: its servers entry is its public address, not localhost.
    document = await servedOpenApiDocument({ PUBLIC_URL: 'https://mailroom.acme.test' });
  });

  it("passes Redocly's recommended ruleset with no error and no warning", async () => {
    const problems = await redoclyRecommended(document);
    const found = problems.map(
      (problem) => `${problem.severity} ${problem.ruleId} at ${problem.location[0]?.pointer ?? '?'}: ${problem.message}`,
    );
    expect(found).toEqual([]);
  });

  it('finds a document with the defects it was written against', async () => {
    // The same check must see what it exists for: an operation without operationId, a public route without security.
    const defective = structuredClone(document);
    const operation = (name: string) => operations(defective).find((found) => found.name === name)!.operation;
    delete operation('GET /v1/conversations').operationId;
    delete operation('GET /csat/{token}').security;
    defective.servers = [];
    const problems = await redoclyRecommended(defective);
    expect(problems.map((problem) => problem.ruleId)).toEqual(
      expect.arrayContaining(['operation-operationId', 'security-defined', 'no-empty-servers']),
    );
  });

  it('names every operation once, in lowerCamelCase, as generated clients name their methods', () => {
    const all = operations(document);
    expect(all.length).toBeGreaterThan(90);
    const badlyNamed = all.filter(({ operation }) => !/^[a-z][a-zA-Z0-9]*$/.test(operation.operationId ?? ''));
    expect(badlyNamed.map(({ name }) => name)).toEqual([]);
    const named = new Map<string, string>();
    const twice = all.flatMap(({ name, operation }) => {
      const first = named.get(operation.operationId!);
      named.set(operation.operationId!, first ?? name);
      return first === undefined ? [] : [`${operation.operationId}: ${first} and ${name}`];
    });
    expect(twice).toEqual([]);
  });

  // A route anyone may call is a decision: it is added here on purpose, never by a forgotten `security`.
  it('declares exactly the routes meant for anyone public', () => {
    const publicRoutes = operations(document)
      .filter(({ operation }) => operation.security?.length === 0)
      .map(({ name }) => name);
    expect(publicRoutes.sort()).toEqual(
      [
        'GET /csat/{token}',
        'POST /csat/{token}',
        'GET /unsubscribe/surveys/{token}',
        'POST /unsubscribe/surveys/{token}',
        'GET /v1/oauth/callback',
        'GET /ready',
      ].sort(),
    );
  });
});
