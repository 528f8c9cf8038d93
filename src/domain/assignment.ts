// Who gets the next conversation. Pure: the caller loads the candidates and holds the lock.

export const ASSIGNMENT_STRATEGIES = ['round_robin', 'load'] as const;
export type AssignmentStrategy = (typeof ASSIGNMENT_STRATEGIES)[number];

export interface AssignmentCandidate {
  userId: string;
  available: boolean;
  /** When this agent last received a conversation on the channel; null for never. */
  lastAssignedAt: Date | null;
  /** The agent's place in the order they joined the channel (1 = first): breaks ties so the order is stable. */
  joinedOrder: number;
  /** Open conversations assigned to the agent on this channel (capacity is per channel). */
  openConversations: number;
  /** Most open conversations the agent takes; null = unlimited. */
  capacity: number | null;
}

export function hasFreeCapacity(c: AssignmentCandidate): boolean {
  return c.capacity === null || c.openConversations < c.capacity;
}

/** Round robin order: who waited longest first (never assigned before anyone), then who joined first, then user id. */
function byWaitingTime(a: AssignmentCandidate, b: AssignmentCandidate): number {
  const waitedSince = (c: AssignmentCandidate) => c.lastAssignedAt?.getTime() ?? Number.NEGATIVE_INFINITY;
  // Not `waitedSince(a) - waitedSince(b)`: -Infinity - -Infinity is NaN.
  const sa = waitedSince(a);
  const sb = waitedSince(b);
  if (sa !== sb) return sa < sb ? -1 : 1;
  const joined = a.joinedOrder - b.joinedOrder;
  if (joined !== 0) return joined;
  return a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0;
}

function byLoad(a: AssignmentCandidate, b: AssignmentCandidate): number {
  return a.openConversations - b.openConversations || byWaitingTime(a, b);
}

/**
 * round_robin: among available agents with free capacity, the one who waited longest (never-assigned first, then who joined first, then userId).
 * load: among available agents with free capacity, fewest open conversations; ties broken like round robin.
 * `exclude` user ids are skipped (used to offer an SLA-breached conversation to someone else).
 */
export function chooseAgent(
  strategy: AssignmentStrategy,
  candidates: readonly AssignmentCandidate[],
  options: { exclude?: readonly string[] } = {},
): AssignmentCandidate | undefined {
  const compare = strategy === 'load' ? byLoad : byWaitingTime;
  const excluded = new Set(options.exclude ?? []);
  let best: AssignmentCandidate | undefined;
  for (const c of candidates) {
    if (!c.available || !hasFreeCapacity(c) || excluded.has(c.userId)) continue;
    if (best === undefined || compare(c, best) < 0) best = c;
  }
  return best;
}

/**
 * Plans assigning queued conversations (given in queue order) to candidates: repeatedly chooseAgent, counting each
 * assignment as an open conversation of the chosen agent and as their latest assignment (at a fake time after every
 * known one, strictly increasing, so round robin keeps rotating). An item with `eligibleUserIds` (e.g. a team) only
 * goes to those agents; an item nobody eligible can take is skipped (stays queued) and later items are still considered.
 * Stops when nobody has capacity. Returns pairs in queue order. Pure; the caller holds the lock.
 */
export function planAssignments<Q extends { conversationId: string; eligibleUserIds?: readonly string[] | null }>(
  strategy: AssignmentStrategy,
  queue: readonly Q[],
  candidates: readonly AssignmentCandidate[],
  now: Date,
): Array<{ item: Q; userId: string }> {
  const state = candidates.map((c) => ({ ...c }));
  let clock = Math.max(now.getTime(), ...state.map((c) => c.lastAssignedAt?.getTime() ?? Number.NEGATIVE_INFINITY));
  const plan: Array<{ item: Q; userId: string }> = [];
  for (const item of queue) {
    if (!state.some((c) => c.available && hasFreeCapacity(c))) break;
    const eligible = item.eligibleUserIds ? new Set(item.eligibleUserIds) : null;
    const chosen = chooseAgent(strategy, eligible ? state.filter((c) => eligible.has(c.userId)) : state);
    if (!chosen) continue;
    chosen.openConversations += 1;
    chosen.lastAssignedAt = new Date(++clock);
    plan.push({ item, userId: chosen.userId });
  }
  return plan;
}
