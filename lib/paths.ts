import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The directory holding package.json, whether running from the sources or from dist/. */
function findProjectRoot (): string {
  let directory = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(directory, 'package.json'))) {
    const parent = dirname(directory)
    if (parent === directory) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url))
    directory = parent
  }
  return directory
}

export const projectRoot = findProjectRoot()
export const migrationsDir = join(projectRoot, 'migrations')
export const bundledPolicyDir = join(projectRoot, 'policies')
export const dataDir = join(projectRoot, '.data')
