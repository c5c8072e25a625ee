// npm run docs:api — docs/openapi.json and docs/api.md, from the OpenAPI document the server
// generates (dist/, built first by the npm script). The app is built on embedded stand-ins (an
// in-process cache, a throwaway key pair, a database it never connects to): generating the
// document needs no service. ISSUER_URL is the dev default, so the URLs are the ones `npm run dev`
// serves. test/docs/api-reference.test.ts fails when the committed files differ from these.
import { generateKeyPairSync } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildApp } from '../../dist/app.js'
import { loadConfig } from '../../dist/plugins/config.js'
import { projectRoot } from '../../dist/lib/paths.js'
import { renderApiReference } from '../../dist/lib/api-reference.js'

const DOCS_ISSUER_URL = 'http://localhost:3000'

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const config = loadConfig({
  DATABASE_URL: 'postgresql://docs@127.0.0.1:1/docs',
  ISSUER_URL: DOCS_ISSUER_URL,
  JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  LOG_LEVEL: 'silent',
  MAX_EVENT_LOOP_DELAY_MS: '0'
}, { embedded: true })
const app = await buildApp({ config })
await app.ready()
const document = app.swagger()
await app.close()

const docs = join(projectRoot, 'docs')
await mkdir(docs, { recursive: true })
await writeFile(join(docs, 'openapi.json'), JSON.stringify(document, null, 2) + '\n')
await writeFile(join(docs, 'api.md'), renderApiReference(document))
console.log('wrote docs/openapi.json and docs/api.md')
