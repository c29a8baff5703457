// One logger for the whole process: JSON lines on stderr, so stdout stays
// free for command output.
import { pino } from 'pino';
import { UsageError } from './flags.js';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new UsageError(`--log-level=${level}: choose one of ${[...Object.keys(pino.levels.values), 'silent'].join(', ')}`);
  }
  // Synchronous writes: a crash or process.exit() must not lose the last lines.
  // Every line starts with pino's base fields, pid and hostname (the
  // machine's): pino writes a call's field of the same name a second time.
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}
