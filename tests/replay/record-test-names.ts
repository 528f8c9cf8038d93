// A setup file vitest.config.ts adds while histories are recorded: tells the recorder which test ran
// when, so that a workflow recorded after its test file ran is named after the test that started it.
import { beforeEach } from 'vitest';
import { noteTestStarted } from '../support/history-recorder.js';

beforeEach(({ task }) => noteTestStarted(task.fullTestName));
