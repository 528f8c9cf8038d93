import type { temporal } from '@temporalio/proto';

// A conversation runs some steps as activities and, in runs since the patch local-database-steps, as local activities
// (mail's first try among them): a test that counts a step's runs in a history counts both.

const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** The activity type a local activity's marker names (its details are the SDK core's JSON, never encoded). */
function localActivityType(event: temporal.api.history.v1.IHistoryEvent): string | undefined {
  const attributes = event.markerRecordedEventAttributes;
  if (attributes?.markerName !== LOCAL_ACTIVITY_MARKER) return undefined;
  const data = attributes.details?.data?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    return (JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string }).activity_type;
  } catch {
    return undefined;
  }
}

/** How often the history scheduled this activity type as an activity or recorded it as a local activity. */
export function activityRuns(events: temporal.api.history.v1.IHistoryEvent[], activityType: string): number {
  return events.filter(
    (event) =>
      event.activityTaskScheduledEventAttributes?.activityType?.name === activityType ||
      localActivityType(event) === activityType,
  ).length;
}
