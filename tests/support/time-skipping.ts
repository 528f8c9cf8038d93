import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { inject } from 'vitest';
import { mailroomSearchAttributes } from '../../src/workflows/search-attributes.js';
import { TEST_DATA_CONVERTER } from './stack.js';

const { IndexedValueType } = temporal.api.enums.v1;

/**
 * The Java time-skipping test server, with Mailroom's search attributes registered:
 * unlike the dev server it starts without them, and workflows that upsert them would fail.
 */
export async function createTimeSkippingEnvironment(): Promise<TestWorkflowEnvironment> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: inject('timeSkippingServerPath') } },
    client: { dataConverter: TEST_DATA_CONVERTER },
  });
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      mailroomSearchAttributes.map((key) => [key.name, IndexedValueType[`INDEXED_VALUE_TYPE_${key.type}`]]),
    ),
  });
  return env;
}
