// A workflow interceptor the waiting benchmark bundles into both workloads: it logs once per workflow when the
// workflow starts its first timer, which for both is the wait the benchmark measures. The worker process counts these
// log lines (the workflow logger skips replays), so "waiting" is seen the same way for Mailroom and for the bare one.
import { log, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

export const TIMER_PROBE_MESSAGE = 'bench: first timer started';

export const interceptors: WorkflowInterceptorsFactory = () => {
  let reported = false;
  return {
    outbound: [
      {
        startTimer(input, next) {
          if (!reported) {
            reported = true;
            log.info(TIMER_PROBE_MESSAGE);
          }
          return next(input);
        },
      },
    ],
  };
};
