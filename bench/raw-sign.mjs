// The raw signing rate of one core: synchronous node:crypto signatures over a token-sized input for
// argv[2] seconds with argv[3]'s algorithm (RS256, ES256 or EdDSA; default RS256), in a process of
// its own (no other heap to collect meanwhile). Prints signatures per second.
import { sign } from 'node:crypto'
import { keyPairFor, signArguments } from './lib/jws.mjs'

const seconds = Number(process.argv[2] ?? 2)
const alg = process.argv[3] ?? 'RS256'
const { privateKey } = keyPairFor(alg)
const [digest, key] = signArguments(alg, privateKey)
const input = Buffer.alloc(420, 'a') // about the size of an access token's header.payload
for (let i = 0; i < 200; i += 1) sign(digest, input, key) // warm-up
let signatures = 0
const started = performance.now()
while (performance.now() - started < seconds * 1000) {
  sign(digest, input, key)
  signatures += 1
}
process.stdout.write(String(signatures / ((performance.now() - started) / 1000)))
