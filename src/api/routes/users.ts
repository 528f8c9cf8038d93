import { OpenAPIHono } from '@hono/zod-openapi';
import type { ApiDeps, AppEnv } from '../env.js';

// Placeholder: filled in by the change that builds these routes.
export function userRoutes(_deps: ApiDeps) {
  return new OpenAPIHono<AppEnv>();
}
