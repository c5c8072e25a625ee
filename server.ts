import { runCli } from './cli/program.js'

/**
 * Process entry of `node dist/server.js` and `npm start`: the `agentidp` command line (cli/program.ts)
 * with `serve` as its default command, so that
 *   node dist/server.js                  the production server (also `start`)
 *   node dist/server.js dev              the embedded default of `npm run dev`
 *   node dist/server.js bootstrap --email E
 *   node dist/server.js audit-prune      (`agentidp audit prune`)
 * keep working as before the command line existed; every other `agentidp` command works here too.
 */
const args = process.argv.slice(2)
await runCli(args.length === 0 ? ['serve'] : args)
