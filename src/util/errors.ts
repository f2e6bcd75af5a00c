/** An error meant for the user: the CLI prints its message without a stack trace. */
export class GraftError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'GraftError';
  }
}
