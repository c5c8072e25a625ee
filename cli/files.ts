import { chmod, open, unlink, type FileHandle } from 'node:fs/promises'
import { resolve } from 'node:path'
import { CliError, ExitCode } from './exit-codes.js'

/**
 * Files that hold secrets (keys, client secrets): created with mode 0600, never over an existing
 * file unless asked (`--force`), so a secret does not land where others can read it.
 */

export interface SecretFile {
  path: string
  write (content: string): Promise<void>
  /** removes the file when nothing was written to it (the work it was opened for failed) */
  discard (): Promise<void>
}

/**
 * Creates `path` with mode 0600 (an existing file: refused, exit 3, unless `force`; then it is
 * truncated and made 0600). An unwritable directory fails the command with exit 1.
 */
export async function createPrivateFile (path: string, options: { force?: boolean } = {}): Promise<{ path: string, handle: FileHandle }> {
  const absolute = resolve(path)
  let handle
  try {
    handle = await open(absolute, options.force === true ? 'w' : 'wx', 0o600)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === 'EEXIST') throw new CliError(`${absolute} already exists; choose another file or pass --force to replace it`, ExitCode.REFUSED)
    throw new CliError(`cannot write ${absolute} (${code ?? (error as Error).message})`)
  }
  // an existing file replaced with --force keeps its old mode unless told
  await handle.chmod(0o600)
  return { path: absolute, handle }
}

/**
 * Opens `path` for a secret before the work that makes the secret runs: an existing file (without
 * `force`) or an unwritable directory fails the command before anything is created.
 */
export async function openSecretFile (path: string, options: { force?: boolean } = {}): Promise<SecretFile> {
  const { path: absolute, handle } = await createPrivateFile(path, options)
  let written = false
  return {
    path: absolute,
    async write (content) {
      try {
        await handle.writeFile(content)
        written = true
      } finally {
        await handle.close()
      }
    },
    async discard () {
      if (written) return
      await handle.close().catch(() => {})
      await unlink(absolute).catch(() => {})
    }
  }
}

/** Writes a whole secret file at once (mode 0600). */
export async function writeSecretFile (path: string, content: string, options: { force?: boolean } = {}): Promise<string> {
  const file = await openSecretFile(path, options)
  await file.write(content)
  await chmod(file.path, 0o600)
  return file.path
}
