import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Selectable } from 'kysely';
import type { ContactsTable } from '../../db/schema.js';
import { accessibleChannelIds } from '../access.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { afterCursor, decodeCursor, PageQuerySchema, pageSchema, toPage } from '../pagination.js';
import { MailboxAddress } from '../schemas/address.js';
import { Problem, problemResponses } from '../problem.js';
import { ConversationSchema, conversationQuery, toConversation } from './conversations.js';

// The people who write to the account's channels. Contacts are account-wide: every user of the account
// sees and edits them, but a profile lists only the conversations the caller may read (A2). A contact
// without an address (a web form, A3) is mailed nothing until its email is set here.

const security = [{ apiKey: [] }];
const idParams = z.object({ contactId: z.uuid() });

const AttributesSchema = z
  .record(z.string().min(1).max(100), z.union([z.string().max(1000), z.number(), z.boolean(), z.null()]))
  .refine((attributes) => Object.keys(attributes).length <= 100, 'at most 100 attributes')
  .openapi({ description: 'Facts about the contact that routing rules may test (plan, country, ...)' });

const ContactSchema = z
  .object({
    id: z.uuid(),
    email: z.string().nullable().openapi({ description: 'Lower-cased; null while unknown (nobody mails them then)' }),
    name: z.string().nullable(),
    attributes: AttributesSchema,
    createdAt: z.iso.datetime(),
  })
  .openapi('Contact');

const ContactProfileSchema = ContactSchema.extend({
  conversations: z.array(ConversationSchema).openapi({ description: 'Those the caller may read, newest first' }),
}).openapi('ContactProfile');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/contacts',
  operationId: 'listContacts',
  tags: ['Contacts'],
  summary: 'List the contacts of the account, newest first',
  security,
  request: {
    query: PageQuerySchema.extend({
      email: z
        .string()
        .trim()
        .min(1)
        .max(254)
        .optional()
        .openapi({ description: 'The contact with exactly this address (case does not matter)' }),
      q: z.string().trim().min(1).max(200).optional().openapi({ description: 'Part of the name or the address' }),
    }),
  },
  responses: {
    200: { description: 'Contacts', content: { 'application/json': { schema: pageSchema(ContactSchema, 'ContactPage') } } },
    ...problemResponses(401, 422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/contacts/{contactId}',
  operationId: 'getContact',
  tags: ['Contacts'],
  summary: 'A contact with their attributes and the conversations the caller may read',
  security,
  request: { params: idParams },
  responses: {
    200: { description: 'The contact', content: { 'application/json': { schema: ContactProfileSchema } } },
    ...problemResponses(401, 404, 422),
  },
});

const patchRoute = createRoute({
  method: 'patch',
  path: '/v1/contacts/{contactId}',
  operationId: 'updateContact',
  tags: ['Contacts'],
  summary: 'Change the name, the email address or the attributes of a contact',
  description:
    'Fields given replace what is stored (attributes as a whole); an address is set or changed, not removed. ' +
    '409 email-taken when another contact of the account has the address. Setting the address of a contact ' +
    'that had none (a web form) lets agents reply to them.',
  security,
  request: {
    params: idParams,
    body: {
      required: true,
      content: {
        'application/json': {
          // Strict, and at least one field: an unknown field (a typo) or {} is a 422, not a 200 that changes nothing.
          schema: z
            .strictObject({
              name: z.string().trim().min(1).max(200).nullable().optional(),
              email: MailboxAddress.optional(),
              attributes: AttributesSchema.optional(),
            })
            .refine((update) => Object.keys(update).length > 0, 'send at least one of: name, email, attributes')
            .openapi('ContactInput', { minProperties: 1 }),
        },
      },
    },
  },
  responses: {
    200: { description: 'Saved', content: { 'application/json': { schema: ContactSchema } } },
    ...problemResponses(401, 404, 409, 422),
  },
});

type ContactRow = Selectable<ContactsTable>;

function toContact(row: ContactRow): z.infer<typeof ContactSchema> {
  return { id: row.id, email: row.email, name: row.name, attributes: row.attributes, createdAt: row.created_at.toISOString() };
}

const notFound = (contactId: string) => new Problem(404, 'not-found', 'Contact not found', `no contact ${contactId}`);

const emailTaken = (email: string) =>
  new Problem(409, 'email-taken', 'The address belongs to another contact', `another contact of the account has ${email}`, [
    { field: 'email', message: 'another contact of the account has this address' },
  ]);

/** `q` as a literal part of an ILIKE pattern. */
function containing(q: string): string {
  return `%${q.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
}

export function contactRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();

  function contactQuery(user: AuthenticatedUser) {
    // An erased contact (DELETE /v1/contacts/{id}) is an anonymous tombstone: it answers 404 like none.
    return db
      .selectFrom('contacts as ct')
      .selectAll('ct')
      .where('ct.account_id', '=', user.accountId)
      .where('ct.erasure_requested_at', 'is', null);
  }

  app.openapi(listRoute, async (c) => {
    const { cursor, limit, email, q } = c.req.valid('query');
    let query = contactQuery(c.get('user'))
      .orderBy('ct.created_at', 'desc')
      .orderBy('ct.id', 'desc')
      .limit(limit + 1);
    if (cursor) query = query.where(afterCursor('contacts', 'ct', decodeCursor(cursor)));
    // Addresses are stored lower-cased.
    if (email) query = query.where('ct.email', '=', email.toLowerCase());
    if (q) {
      const pattern = containing(q);
      query = query.where((eb) => eb.or([eb('ct.name', 'ilike', pattern), eb('ct.email', 'ilike', pattern)]));
    }
    return c.json(toPage(await query.execute(), limit, toContact), 200);
  });

  app.openapi(getRoute, async (c) => {
    const { contactId } = c.req.valid('param');
    const user = c.get('user');
    const contact = await contactQuery(user).where('ct.id', '=', contactId).executeTakeFirst();
    if (!contact) throw notFound(contactId);
    const conversations = await conversationQuery(db, user)
      .where('c.contact_id', '=', contactId)
      .where('c.channel_id', 'in', accessibleChannelIds(db, user))
      .orderBy('c.created_at', 'desc')
      .orderBy('c.id', 'desc')
      .execute();
    return c.json({ ...toContact(contact), conversations: conversations.map(toConversation) }, 200);
  });

  app.openapi(patchRoute, async (c) => {
    const { contactId } = c.req.valid('param');
    const input = c.req.valid('json');
    const user = c.get('user');
    const email = input.email?.toLowerCase();
    try {
      const saved = await db.transaction().execute(async (trx) => {
        const contact = await trx
          .selectFrom('contacts')
          .selectAll()
          .where('id', '=', contactId)
          .where('account_id', '=', user.accountId)
          .where('erasure_requested_at', 'is', null)
          .forUpdate()
          .executeTakeFirst();
        if (!contact) throw notFound(contactId);
        if (email && email !== contact.email) {
          const taken = await trx
            .selectFrom('contacts')
            .select('id')
            .where('account_id', '=', user.accountId)
            .where('email', '=', email)
            .executeTakeFirst();
          if (taken) throw emailTaken(email);
        }
        const changes = {
          ...(input.name !== undefined ? { name: input.name } : {}),
          ...(email ? { email } : {}),
          ...(input.attributes ? { attributes: JSON.stringify(input.attributes) } : {}),
        };
        if (Object.keys(changes).length === 0) return contact;
        return trx.updateTable('contacts').set(changes).where('id', '=', contactId).returningAll().executeTakeFirstOrThrow();
      });
      return c.json(toContact(saved), 200);
    } catch (error) {
      // Another request took the address between the check and the update.
      if ((error as { code?: string }).code === '23505' && email) throw emailTaken(email);
      throw error;
    }
  });

  return app;
}
