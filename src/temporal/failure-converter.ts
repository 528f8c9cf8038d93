// Failure messages and stack traces (an SMTP server's answer naming the customer, an error quoting a mail) travel
// as an encoded payload, so the payload codec encrypts them like any other; Temporal keeps only "Encoded failure".
// The SDK loads this file by path with require(), in the worker and the workflow bundle: plain JavaScript syntax
// and no relative imports, so that it loads the same under tsx, vitest, compiled code and bare node.
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
