// Preloaded into the workflows' sandbox (workflowBundleOptions in src/worker.ts) before its globals are frozen.
// The SDK records where each promise of a workflow was made, for the stack trace the Temporal UI shows of a running
// workflow: a stack capture for every promise, the largest part of a workflow task's CPU. A capture costs by its
// frames; 4 still name the wait and its callers, and an error's stack keeps its innermost 4.
Error.stackTraceLimit = 4;
export {};
