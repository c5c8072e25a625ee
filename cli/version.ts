import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../lib/paths.js'

/** package.json's version: `agentidp --version`, and the User-Agent of API calls. */
export function packageVersion (): string {
  return (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version
}
