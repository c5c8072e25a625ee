// How a server under bench/servers/ tells the runner it listens: over the IPC channel when it has
// one (its stdout is the log file then, as deployed), else as one JSON line on stdout (run by hand).
// Resolves once the message is out (a process that exits right after must not lose it).
export function announce (message) {
  if (typeof process.send === 'function') return new Promise((resolve) => { process.send(message, resolve) })
  return new Promise((resolve) => { process.stdout.write(JSON.stringify(message) + '\n', resolve) })
}

/** Exit on SIGTERM/SIGINT after `close` (the runner stops every server it started). */
export function onStop (close) {
  const stop = () => { Promise.resolve(close()).finally(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  // the runner's death closes the channel: don't outlive it
  process.once('disconnect', stop)
}
