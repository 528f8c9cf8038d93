import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { startContactErasure } from '../../temporal/erasure.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// Erasing a contact (the right to erasure): admins only. The work is a Temporal workflow that finishes whatever
// happens half-way; the request waits a little for it and answers 204 when it is done, 202 while it goes on.

const security = [{ apiKey: [] }];
const idParams = z.object({ contactId: z.uuid() });

/** How long DELETE waits for the erasure before it answers 202. */
const WAIT_FOR_ERASURE_MS = 10_000;
const POLL_MS = 200;

const ContactErasureSchema = z
  .object({
    contactId: z.uuid(),
    state: z.enum(['running', 'completed']),
    requestedAt: z.iso.datetime(),
    completedAt: z.iso.datetime().nullable(),
  })
  .openapi('ContactErasure');

const location = { Location: { description: 'Where to see the erasure', required: true, schema: { type: 'string' as const } } };

const eraseRoute = createRoute({
  method: 'delete',
  path: '/v1/contacts/{contactId}',
  operationId: 'eraseContact',
  tags: ['Contacts'],
  summary: 'Erase a contact and everything they wrote (admins)',
  description:
    "Removes the contact's address, name and attributes, the messages of their conversations (raw mail, " +
    'attachments, replies and their files), the timelines and the conversations’ Temporal workflows, and their mail ' +
    'in other conversations of the account. What stays is an anonymous tombstone that reports count. A new mail from ' +
    'the same address starts a new contact. 204 once done (also when asked again), 202 while it is still under way ' +
    '(see Location).',
  security,
  request: { params: idParams },
  responses: {
    202: {
      description: 'Under way',
      headers: location,
      content: { 'application/json': { schema: ContactErasureSchema } },
    },
    204: { description: 'Erased' },
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/contacts/{contactId}/erasure',
  operationId: 'getContactErasure',
  tags: ['Contacts'],
  summary: 'Whether the erasure of a contact is done (admins)',
  description: '404 when the contact was never asked to be erased.',
  security,
  request: { params: idParams },
  responses: {
    200: { description: 'The erasure', content: { 'application/json': { schema: ContactErasureSchema } } },
    ...problemResponses(401, 403, 404, 422),
  },
});

const notFound = (contactId: string) => new Problem(404, 'not-found', 'Contact not found', `no contact ${contactId}`);

export function contactErasureRoutes({ db, temporal, taskQueue }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  function findContact(user: AuthenticatedUser, contactId: string) {
    return db
      .selectFrom('contacts')
      .select(['id', 'erasure_requested_at', 'erased_at'])
      .where('id', '=', contactId)
      .where('account_id', '=', user.accountId)
      .executeTakeFirst();
  }

  function toErasure(contact: { id: string; erasure_requested_at: Date | null; erased_at: Date | null }) {
    return {
      contactId: contact.id,
      state: contact.erased_at ? ('completed' as const) : ('running' as const),
      requestedAt: (contact.erasure_requested_at ?? contact.erased_at)!.toISOString(),
      completedAt: contact.erased_at?.toISOString() ?? null,
    };
  }

  app.openapi(eraseRoute, async (c) => {
    const { contactId } = c.req.valid('param');
    const user = c.get('user');
    requireAdmin(user, 'erases a contact');
    const contact = await findContact(user, contactId);
    if (!contact) throw notFound(contactId);
    if (contact.erased_at) return c.body(null, 204);
    await startContactErasure(temporal, contactId, taskQueue);
    // Recorded once Temporal has it: from now on the erasure can be followed, even before a worker takes it up.
    await db
      .updateTable('contacts')
      .set({ erasure_requested_at: sql<Date>`coalesce(erasure_requested_at, now())` })
      .where('id', '=', contactId)
      .execute();
    // Polled in the database rather than through the workflow's result: nothing is left waiting once we answer.
    const deadline = Date.now() + WAIT_FOR_ERASURE_MS;
    let current = contact;
    while (Date.now() < deadline) {
      await sleep(POLL_MS);
      current = (await findContact(user, contactId)) ?? current;
      if (current.erased_at) return c.body(null, 204);
    }
    c.header('Location', `/v1/contacts/${contactId}/erasure`);
    return c.json(toErasure(current), 202);
  });

  app.openapi(getRoute, async (c) => {
    const { contactId } = c.req.valid('param');
    const user = c.get('user');
    requireAdmin(user, 'sees erasures');
    const contact = await findContact(user, contactId);
    if (!contact) throw notFound(contactId);
    if (!contact.erasure_requested_at && !contact.erased_at) {
      throw new Problem(404, 'not-found', 'No erasure', `contact ${contactId} was not asked to be erased`);
    }
    return c.json(toErasure(contact), 200);
  });

  return app;
}
