import { z } from '@hono/zod-openapi';
import { isSingleMailbox, MAX_ADDRESS_LENGTH } from '../../domain/addresses.js';

/** A contact's address as the API takes it: exactly one mailbox, the only kind Mailroom mails. */
export const MailboxAddress = z
  .email({ error: 'not an email address', abort: true })
  .max(MAX_ADDRESS_LENGTH)
  .refine(isSingleMailbox, 'must be one mailbox, local@domain')
  .openapi({ description: 'One mailbox, local@domain; stored lower-cased', example: 'ann@example.com' });
