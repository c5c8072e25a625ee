#!/usr/bin/env node
import { runCli } from './program.js'

/** The `agentidp` executable (package.json `bin`): `agentidp --help` lists the commands. */
await runCli(process.argv.slice(2))
