import { describe, expect, it } from 'vitest';
import { createApp, OPENAPI_PATH } from '../../src/api/app.js';
import type { ApiDeps } from '../../src/api/env.js';
import { createLogger } from '../../src/logger.js';

// The contract: every route the app answers is in its OpenAPI document, with its problems.

// Not API operations: the document itself, its interactive page, the liveness probe.
// Not the clients' contract: the document itself, its viewer, liveness, and Prometheus' scrape.
const OUTSIDE_THE_DOCUMENT = new Set([`GET ${OPENAPI_PATH}`, 'GET /docs', 'GET /health', 'GET /metrics']);

function buildApp() {
  // Routes are registered when the app is built; nothing here is called.
  const deps = {
    config: { SECRET_KEY: 'x'.repeat(32), MAX_INBOUND_BYTES: 1024, PUBLIC_URL: 'http://unused', INBOUND_DOMAIN: 'inbound.test' },
    logger: createLogger('silent'),
    capture: {},
  } as unknown as ApiDeps;
  return createApp(deps);
}

describe('the OpenAPI document', () => {
  const app = buildApp();
  const document = app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 'Mailroom API', version: 'test' } });
  const documented = new Set(
    Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
      Object.keys(item ?? {})
        .filter((key) => ['get', 'put', 'post', 'patch', 'delete'].includes(key))
        .map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    ),
  );

  it('documents every route the app answers, and nothing it does not', () => {
    const served = new Set(
      app.routes.filter((route) => route.method !== 'ALL').map((route) => `${route.method} ${route.path.replace(/\/$/, '')}`),
    );
    const undocumented = [...served].filter((route) => !documented.has(route) && !OUTSIDE_THE_DOCUMENT.has(route));
    const stale = [...documented].filter((route) => !served.has(route));
    expect(undocumented).toEqual([]);
    expect(stale).toEqual([]);
  });

  it('gives every operation a summary, a tag, a success response and problem+json for its 4xx', () => {
    const gaps: string[] = [];
    for (const [path, item] of Object.entries(document.paths ?? {})) {
      for (const [method, operation] of Object.entries(item ?? {}) as Array<[string, any]>) {
        const name = `${method.toUpperCase()} ${path}`;
        if (!operation.summary) gaps.push(`${name}: no summary`);
        if (!operation.tags?.length) gaps.push(`${name}: no tag`);
        const statuses = Object.keys(operation.responses ?? {});
        if (!statuses.some((status) => status.startsWith('2') || status.startsWith('3')))
          gaps.push(`${name}: no success response`);
        for (const status of statuses.filter((s) => s.startsWith('4'))) {
          const content = operation.responses[status].content ?? {};
          // The survey pages answer customers' browsers in HTML; everything else answers programs.
          if (!content['application/problem+json'] && !content['text/html']) gaps.push(`${name}: ${status} is not problem+json`);
        }
        const needsKey = (operation.security ?? []).some((scheme: Record<string, unknown>) => 'apiKey' in scheme);
        if (needsKey && !statuses.includes('401')) gaps.push(`${name}: no 401`);
      }
    }
    expect(gaps).toEqual([]);
  });
});
