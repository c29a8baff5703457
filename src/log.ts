// One logger for the whole process: JSON lines on stderr, so stdout stays
// free for command output.
import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  // Synchronous writes: a crash or process.exit() must not lose the last lines.
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}
