import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

// Custom search attributes for filtering conversations in the Temporal UI.
// Ids and enums only: search attributes are not encrypted, so no personal data goes here.
export const ChannelIdAttribute = defineSearchAttributeKey('MailroomChannelId', SearchAttributeType.KEYWORD);
export const StatusAttribute = defineSearchAttributeKey('MailroomStatus', SearchAttributeType.KEYWORD);
export const StageAttribute = defineSearchAttributeKey('MailroomStage', SearchAttributeType.KEYWORD);
export const AssigneeIdAttribute = defineSearchAttributeKey('MailroomAssigneeId', SearchAttributeType.KEYWORD);
export const PriorityAttribute = defineSearchAttributeKey('MailroomPriority', SearchAttributeType.KEYWORD);
/** True once the first-response target passed without a reply from a person. */
export const SlaBreachedAttribute = defineSearchAttributeKey('MailroomSlaBreached', SearchAttributeType.BOOL);

/** Every custom attribute, for registering them on a Temporal server (dev server flags, docker-compose). */
export const mailroomSearchAttributes = [
  ChannelIdAttribute,
  StatusAttribute,
  StageAttribute,
  AssigneeIdAttribute,
  PriorityAttribute,
  SlaBreachedAttribute,
] as const;
