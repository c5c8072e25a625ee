// autocannon, driven from this process, with latencies recorded per response: autocannon's own
// histogram has 1 ms resolution and no p95 (its percentiles are 50, 75, 90, 97.5, 99 …), so every
// 2xx response time (sub-millisecond, from its 'response' event) is kept and sorted instead — a
// few hundred thousand numbers at most.
import autocannon from 'autocannon'

/** The q-th quantile (0 < q ≤ 1) of ascending `sorted`, nearest rank; null when empty. */
export function quantile (sorted, q) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

export function median (values) {
  const present = values.filter((value) => typeof value === 'number' && Number.isFinite(value))
  if (present.length === 0) return null
  const sorted = [...present].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * One load: `request` is { method, path, headers, body } or a function returning one per request
 * (fresh proofs, round-robin clients). `seconds` or `amount` (total requests) bounds it.
 * Returns requests/s of 2xx answers, latency percentiles in ms, and every kind of failure.
 */
export async function runLoad ({ origin, request, connections, seconds, amount }) {
  const fixed = typeof request === 'function' ? null : request
  const latencies = []
  const statuses = {}
  const options = {
    url: origin,
    connections,
    ...(amount === undefined ? { duration: seconds } : { amount }),
    // a server slower than 10 s per answer is broken, not measured
    timeout: 10,
    requests: [fixed === null
      ? {
          setupRequest: (previous) => {
            const next = request()
            return { ...previous, method: next.method, path: next.path, headers: next.headers ?? {}, body: next.body }
          }
        }
      : { method: fixed.method, path: fixed.path, headers: fixed.headers ?? {}, body: fixed.body }]
  }
  const started = performance.now()
  const instance = autocannon(options)
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
  })
  // a socket error is counted by autocannon; one sample of its message helps tell what broke
  let firstError = null
  instance.on('reqError', (error) => { firstError ??= error?.message ?? String(error) })
  const result = await instance
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const ok = latencies.length
  return {
    requests: ok,
    rps: ok / elapsed,
    p50: quantile(latencies, 0.50),
    p95: quantile(latencies, 0.95),
    p99: quantile(latencies, 0.99),
    max: latencies.length === 0 ? null : latencies[latencies.length - 1],
    non2xx: result.non2xx,
    // autocannon's `errors` already counts its timeouts
    socketErrors: result.errors - result.timeouts,
    timeouts: result.timeouts,
    errors: result.non2xx + result.errors,
    statuses,
    firstError,
    seconds: elapsed
  }
}
