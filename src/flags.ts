// Command-line value parsing shared by every subcommand.

/** Bad command-line input: kube-lb prints the message as one sentence on stderr and exits 2. */
export class UsageError extends Error {}

/** A flag whose value is one of a few words: --flag=value, checked. */
export function parseChoice<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`--${flag}=${value}: choose ${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`);
  return value as T;
}

/** node:util's parseArgs errors, said as kube-lb says its own; `options` are those parseArgs was given. */
export function parseArgsUsageError(err: NodeJS.ErrnoException, options: Record<string, { type: string; short?: string }>): Error {
  const flag = /'(?:-\w, )?(--?[^' ]+)/.exec(err.message)?.[1];
  if (flag === undefined) return err;
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new UsageError(`${flag}: unknown flag (--help lists them)`);
  if (err.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return err;
  const option = Object.entries(options).find(([long, o]) => flag === `--${long}` || flag === `-${o.short}`)?.[1];
  return new UsageError(option?.type === 'string' ? `${flag}: needs a value, as in ${flag}${flag.startsWith('--') ? '=' : ' '}VALUE` : `${flag}: takes no value`);
}

const MS_PER_UNIT: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A whole number from min to max, written in decimal digits only. */
export function parseCount(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`--${flag}=${text}: not a whole number from ${min} to ${max}`);
  return n;
}

const DURATION = /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)/;

/**
 * Parses a Go-style duration ("500ms", "30s", "1m", "1h30m", "1.5h") into
 * milliseconds. Like Go's time.ParseDuration, every number needs a unit except
 * a bare "0"; unlike it, negative durations are rejected since no interval
 * can be negative.
 */
export function parseDuration(flag: string, text: string): number {
  const invalid = (why: string) =>
    new UsageError(`--${flag}=${text}: not a duration: ${why} (examples: 500ms, 30s, 1m, 1h30m)`);
  if (text === '0') return 0;
  if (text === '') throw invalid('empty');
  if (text.startsWith('-')) throw invalid('must not be negative');
  let rest = text;
  let total = 0;
  while (rest !== '') {
    const term = DURATION.exec(rest)?.[0];
    if (term === undefined) throw invalid(`cannot parse ${JSON.stringify(rest)} as <number><unit> with unit ns, us, ms, s, m or h`);
    const unit = /[a-zµ]+$/.exec(term)![0];
    total += Number(term.slice(0, -unit.length)) * MS_PER_UNIT[unit]!;
    rest = rest.slice(term.length);
  }
  return total;
}
