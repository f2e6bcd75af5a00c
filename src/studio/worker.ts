/**
 * The child process one Studio training runs in (forked by src/studio/runner.ts): it receives the job
 * as its first IPC message, runs it with src/studio/job.ts, and sends progress, the evaluation or the
 * error back. It exits when the server goes away (IPC disconnect), so a killed server leaves no
 * orphan training behind.
 */
import { runJob, type JobSpec, type JobEvent } from './job.js';
import { GraftError } from '../util/errors.js';

export type WorkerMessage =
  | JobEvent
  | { type: 'done'; evaluation: unknown }
  | { type: 'error'; message: string; user: boolean };

const send = (m: WorkerMessage, then?: () => void) => {
  if (process.connected) process.send!(m, undefined, {}, () => then?.());
  else then?.();
};
const finish = (m: WorkerMessage) => send(m, () => process.exit(0));

process.on('disconnect', () => process.exit(1));
process.once('message', (job: JobSpec) => {
  runJob(job, send).then(
    (evaluation) => {
      finish({ type: 'done', evaluation });
    },
    (e: unknown) => {
      const err = e as Error;
      finish({
        type: 'error',
        message: err instanceof GraftError ? err.message : (err?.stack ?? String(e)),
        user: err instanceof GraftError,
      });
    },
  );
});
