// The raw RS256 signing rate of one core: synchronous node:crypto signatures over a token-sized
// input for argv[2] seconds, in a process of its own (no other heap to collect meanwhile). Prints
// signatures per second.
import { generateKeyPairSync, sign } from 'node:crypto'

const seconds = Number(process.argv[2] ?? 2)
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const input = Buffer.alloc(420, 'a') // about the size of an access token's header.payload
for (let i = 0; i < 200; i += 1) sign('sha256', input, privateKey) // warm-up
let signatures = 0
const started = performance.now()
while (performance.now() - started < seconds * 1000) {
  sign('sha256', input, privateKey)
  signatures += 1
}
process.stdout.write(String(signatures / ((performance.now() - started) / 1000)))
