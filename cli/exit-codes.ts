/**
 * The exit codes of `agentidp` (README, "Command line"): scripts may rely on them.
 */
export const ExitCode = {
  /** the command did what it was asked */
  OK: 0,
  /** it failed: a server or database error, an unreachable dependency, a bad configuration, anything unexpected */
  FAILURE: 1,
  /** the command line was wrong: an unknown command or option, a missing or malformed argument */
  USAGE: 2,
  /** refused: 400 (the server's validation), 401, 403, 429, an OAuth error, a file that must not be overwritten */
  REFUSED: 3,
  /** what was named does not exist (404) */
  NOT_FOUND: 4,
  /** the state forbids it (409): already exists, already revoked, already decommissioned */
  CONFLICT: 5,
  /** a check ran and said no: `audit verify` found the chain broken, `migrate status --check` found pending migrations */
  CHECK_FAILED: 6
} as const

export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode]

/** A failure the command line reports as one line on stderr and an exit code; never a stack trace. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode: ExitCodeValue = ExitCode.FAILURE) {
    super(message)
    this.name = 'CliError'
  }
}

export const usageError = (message: string) => new CliError(message, ExitCode.USAGE)

/** The exit code for an HTTP status the server answered with. */
export function exitCodeForStatus (status: number): ExitCodeValue {
  if (status === 404) return ExitCode.NOT_FOUND
  if (status === 409) return ExitCode.CONFLICT
  if (status >= 400 && status < 500) return ExitCode.REFUSED
  return ExitCode.FAILURE
}
