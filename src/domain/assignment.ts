export interface AssignmentCandidate {
  userId: string;
  available: boolean;
  /** When this agent last received a conversation on the channel; null for never. */
  lastAssignedAt: Date | null;
  /** When the agent joined the channel: breaks ties so the order is stable. */
  joinedAt: Date;
}

/**
 * Round robin (sequential average distribution): the available agent who has waited longest
 * since their last assignment gets the next conversation; agents never assigned go first.
 */
export function chooseRoundRobin(candidates: readonly AssignmentCandidate[]): AssignmentCandidate | undefined {
  const waitedSince = (c: AssignmentCandidate) => c.lastAssignedAt?.getTime() ?? Number.NEGATIVE_INFINITY;
  return candidates
    .filter((c) => c.available)
    .sort(
      (a, b) =>
        waitedSince(a) - waitedSince(b) || a.joinedAt.getTime() - b.joinedAt.getTime() || a.userId.localeCompare(b.userId),
    )[0];
}
