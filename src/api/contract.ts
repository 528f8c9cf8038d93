import type { OpenAPIHono } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import type { AppEnv } from './env.js';
import { Problem, problemResponses } from './problem.js';

// What every route shares, derived from the routes themselves so that no route can forget it: a body
// that is declared required must be sent as JSON (415 otherwise, never "validated as {}"), a known path
// asked with another method answers 405 with Allow, and the document lists 400 and 415 for every JSON body.

interface RouteShape {
  method: string;
  pattern: RegExp;
  requiresJson: boolean;
}

function patternOf(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => (/^\{\w+\}$|^:\w+$/.test(segment) ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}

function routesOf(app: OpenAPIHono<AppEnv>): RouteShape[] {
  return app.openAPIRegistry.definitions.flatMap((definition) => {
    if (definition.type !== 'route') return [];
    const { route } = definition;
    const body = route.request?.body;
    const requiresJson = Boolean(body?.required && body.content && 'application/json' in body.content);
    if (body?.content && 'application/json' in body.content) {
      // Malformed JSON (400) and another media type (415) are answered before the route's own validation.
      route.responses = { ...problemResponses(400, 415), ...route.responses };
    }
    return [{ method: route.method.toUpperCase(), pattern: patternOf(route.path), requiresJson }];
  });
}

/**
 * The middleware that answers 405 and 415 before routing, and the 405 check for the not-found handler.
 * They read the routes when the first request comes, so the middleware can be mounted before the routes.
 */
export function enforceContract(app: OpenAPIHono<AppEnv>) {
  let known: { routes: RouteShape[]; served: Array<{ method: string; pattern: RegExp; literals: number }> } | undefined;
  const shapes = () =>
    (known ??= {
      routes: routesOf(app),
      served: app.routes
        .filter((route) => route.method !== 'ALL')
        .map((route) => ({
          method: route.method,
          pattern: patternOf(route.path),
          literals: route.path.split('/').filter((segment) => segment && !segment.startsWith(':')).length,
        })),
    });

  /** Before routing: another method on a known path (405), a declared JSON body missing (415). */
  const checkMethodAndBody = createMiddleware<AppEnv>(async (c, next) => {
    const notAllowed = methodNotAllowed(c.req.method, c.req.path);
    if (notAllowed) throw notAllowed;
    const route = shapes().routes.find((candidate) => candidate.method === c.req.method && candidate.pattern.test(c.req.path));
    const type = c.req.header('content-type') ?? '';
    if (route?.requiresJson && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
      throw new Problem(
        415,
        'unsupported-media-type',
        'JSON body required',
        'send the body as JSON with "Content-Type: application/json"',
      );
    }
    await next();
  });

  /**
   * A known path asked with a method it does not serve. The most literal paths decide: /rules/order is
   * not /rules/{ruleId}, so GET /rules/order is a 405, not a 422 for "order" being no id.
   */
  function methodNotAllowed(method: string, path: string): Problem | undefined {
    const matches = shapes().served.filter((route) => route.pattern.test(path));
    const literals = Math.max(...matches.map((route) => route.literals));
    const allowed = [...new Set(matches.filter((route) => route.literals === literals).map((route) => route.method))];
    if (method === 'HEAD' && allowed.includes('GET')) return undefined;
    if (allowed.length === 0 || allowed.includes(method)) return undefined;
    return new Problem(405, 'method-not-allowed', 'Method not allowed', `${path} answers ${allowed.join(', ')}`, undefined, {
      allow: allowed.join(', '),
    });
  }

  return { checkMethodAndBody, methodNotAllowed, documentProblems: () => void shapes() };
}
