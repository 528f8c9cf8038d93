import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { TEST_DATA_CONVERTER } from './stack.js';

// Tests that read a fetched history read what Temporal stores: payloads encrypted by the tests' data converter.

const codecs = TEST_DATA_CONVERTER.payloadCodecs ?? [];

/** Payloads of a fetched history, decoded as the SDK decodes them (codecs in reverse order). */
export async function decodePayloads(payloads: Payload[]): Promise<Payload[]> {
  let decoded = payloads;
  for (const codec of [...codecs].reverse()) decoded = await codec.decode(decoded);
  return decoded;
}

/** The value of one payload of a fetched history (a summary, an input). */
export async function historyPayloadValue<T = unknown>(payload: temporal.api.common.v1.IPayload | null | undefined): Promise<T> {
  const [decoded] = await decodePayloads([payload as Payload]);
  return defaultPayloadConverter.fromPayload<T>(decoded!);
}

/** Decodes, in place, the inputs of the events that start or signal a run, so that they read as clear payloads. */
export async function decodeEventInputs(events: temporal.api.history.v1.IHistoryEvent[]): Promise<void> {
  for (const event of events) {
    const input = event.workflowExecutionStartedEventAttributes?.input ?? event.workflowExecutionSignaledEventAttributes?.input;
    if (input?.payloads) input.payloads = await decodePayloads(input.payloads as Payload[]);
  }
}

/** A failure as Temporal keeps it (its message an encoded, and so encrypted, attribute): the message that was raised. */
export async function failureMessage(failure: temporal.api.failure.v1.IFailure): Promise<string> {
  if (!failure.encodedAttributes) return failure.message ?? '';
  const { message } = await historyPayloadValue<{ message?: string }>(failure.encodedAttributes);
  return message ?? '';
}
