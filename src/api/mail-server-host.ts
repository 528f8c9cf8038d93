import {
  DestinationRefusedError,
  DestinationUnresolvedError,
  resolveDestination,
  type Destination,
} from '../security/destinations.js';
import { Problem } from './problem.js';

/**
 * A mail server host an admin sent (IMAP or SMTP settings, a connection test), through the destination
 * policy: its checked address, or undefined when it does not resolve (yet). A host the policy refuses
 * is the request's fault: 422 naming host.
 */
export async function checkedMailServerHost(
  host: string,
  allowedPrivateNetworks: readonly string[] | undefined,
): Promise<Destination | undefined> {
  try {
    return await resolveDestination(host, allowedPrivateNetworks ?? []);
  } catch (error) {
    if (error instanceof DestinationRefusedError) {
      throw new Problem(422, 'validation', 'Request validation failed', error.message, [
        { field: 'host', message: error.message },
      ]);
    }
    if (error instanceof DestinationUnresolvedError) return undefined;
    throw error;
  }
}
