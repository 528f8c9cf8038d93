import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

/**
 * A channel's agents with what assignment and the agents API both show: availability, own and
 * effective capacity (own, else the channel default; null = unlimited) and open conversations on the channel.
 */
export function selectChannelAgents(db: Kysely<Database>, channelId: string) {
  return db
    .selectFrom('channel_agents as ca')
    .innerJoin('users as u', 'u.id', 'ca.user_id')
    .innerJoin('channels as ch', 'ch.id', 'ca.channel_id')
    .select((eb) => [
      'u.id',
      'u.name',
      'u.available',
      'ca.capacity',
      'ca.last_assigned_at',
      'ca.created_at',
      // Ranked in SQL: created_at has microseconds, a JavaScript Date only milliseconds.
      sql<string>`rank() over (order by ca.created_at)`.as('joined_order'),
      eb.fn.coalesce('ca.capacity', 'ch.default_agent_capacity').as('effective_capacity'),
      eb
        .selectFrom('conversations as c')
        .select((count) => count.fn.countAll<string>().as('n'))
        .whereRef('c.assignee_id', '=', 'u.id')
        .whereRef('c.channel_id', '=', 'ca.channel_id')
        .where('c.status', '=', 'open')
        .as('open_conversations'),
    ])
    .where('ca.channel_id', '=', channelId);
}
