import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import { findConversation } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { problemResponses } from '../problem.js';

// Who took part in a conversation, read from its mail as stored: the contact, everyone who wrote into it (a Cc'd
// colleague answering threads in like the customer) and everyone our replies went to in Cc or Bcc.

/** Participants listed at most: a conversation with more is answered with the first ones by address. */
const MAX_PARTICIPANTS = 500;

const ParticipantSchema = z
  .object({
    address: z.string(),
    roles: z.array(z.enum(['contact', 'wrote', 'cc', 'bcc'])).openapi({
      description: 'contact (whom replies go to), wrote (sent mail into it), cc or bcc (a reply went to them so)',
    }),
    lastWroteAt: z.iso.datetime().nullable().openapi({ description: 'When their latest mail came in; null when none' }),
  })
  .openapi('Participant');

const participantsRoute = createRoute({
  method: 'get',
  path: '/v1/conversations/{conversationId}/participants',
  operationId: 'listConversationParticipants',
  tags: ['Conversations'],
  summary: 'Who took part: the contact, whoever wrote into the conversation, whoever replies went to in Cc or Bcc',
  security: [{ apiKey: [] }],
  request: { params: z.object({ conversationId: z.uuid() }) },
  responses: {
    200: {
      description: 'The participants by address',
      content: { 'application/json': { schema: z.object({ participants: z.array(ParticipantSchema) }).openapi('Participants') } },
    },
    ...problemResponses(401, 403, 404),
  },
});

type Role = 'contact' | 'wrote' | 'cc' | 'bcc';

export function conversationParticipantRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(participantsRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const user = c.get('user');
    const conversation = await findConversation(db, user, conversationId);
    const contact = await db
      .selectFrom('contacts')
      .select('email')
      .where('id', '=', conversation.contact_id)
      .executeTakeFirstOrThrow();
    const rows = await sql<{ address: string; role: Role; at: Date | null }>`
      select address, role, max(at) as at from (
        select lower(from_address) as address, 'wrote' as role, received_at as at
          from inbound_messages where conversation_id = ${conversationId} and from_address is not null
        union all
        select lower(a.address), 'cc', null from outbound_messages o, jsonb_array_elements_text(o.cc_addresses) as a(address)
          where o.conversation_id = ${conversationId}
        union all
        select lower(a.address), 'bcc', null from outbound_messages o, jsonb_array_elements_text(o.bcc_addresses) as a(address)
          where o.conversation_id = ${conversationId}
      ) taking_part group by address, role order by address limit ${MAX_PARTICIPANTS * 4}`.execute(db);
    const byAddress = new Map<string, { roles: Set<Role>; lastWroteAt: Date | null }>();
    const add = (address: string, role: Role, at: Date | null) => {
      const entry = byAddress.get(address) ?? { roles: new Set<Role>(), lastWroteAt: null };
      entry.roles.add(role);
      if (role === 'wrote' && at) entry.lastWroteAt = at;
      byAddress.set(address, entry);
    };
    if (contact.email) add(contact.email.toLowerCase(), 'contact', null);
    for (const row of rows.rows) add(row.address, row.role, row.at ? new Date(row.at) : null);
    const participants = [...byAddress.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, MAX_PARTICIPANTS)
      .map(([address, entry]) => ({
        address,
        roles: (['contact', 'wrote', 'cc', 'bcc'] as const).filter((role) => entry.roles.has(role)),
        lastWroteAt: entry.lastWroteAt?.toISOString() ?? null,
      }));
    return c.json({ participants }, 200);
  });
}
