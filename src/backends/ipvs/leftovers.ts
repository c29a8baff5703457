// What a cleanup could not remove. Cleanup removes everything it can and
// then reports the rest together, rather than stopping at the first failure
// or hiding it.
export class Leftovers {
  private readonly problems: string[] = [];

  /** Runs `remove`; a failure is noted under `what`. Resolves with whether it succeeded. */
  async attempt(what: string, remove: () => unknown): Promise<boolean> {
    try {
      await remove();
      return true;
    } catch (err) {
      this.note(what, err as Error);
      return false;
    }
  }

  /** Notes a failure to remove `what`. */
  note(what: string, err: Error): void {
    this.problems.push(`${what}: ${err.message}`);
  }

  /** Throws naming every failure, if there was any. */
  throwIfAny(what: string): void {
    if (this.problems.length > 0) throw new Error(`${what} left state behind: ${this.problems.join('; ')}`);
  }
}
