import { isIP } from 'node:net'

/**
 * X-Forwarded-For as proxies really write it, made safe for Fastify's trustProxy walk (proxy-addr),
 * which throws — a 500 — on an entry that is not a bare IP address (issue 11, defect 4). Each entry
 * becomes its bare address: `1.2.3.4:8080` → `1.2.3.4`, `[::1]` and `[::1]:443` → `::1`,
 * `fe80::1%eth0` → `fe80::1`. An entry with no address at all (`unknown`, RFC 7239's obfuscated
 * identifiers, garbage) ends what can be believed: it and everything a client could have written
 * before it are dropped, so the address used is the last one a trusted proxy did know (at worst the
 * socket's own).
 */
export function sanitizeForwardedFor (header: string): string {
  const entries = header.split(',').map((entry) => bareAddress(entry.trim()))
  const lastUnknown = entries.lastIndexOf(null)
  return entries.slice(lastUnknown + 1).join(', ')
}

function bareAddress (entry: string): string | null {
  // node:net takes a zone index (`%eth0`) as part of an IPv6 address; PostgreSQL's inet does not
  if (isIP(entry) !== 0 && !entry.includes('%')) return entry
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry)
  const candidate = bracketed !== null
    ? bracketed[1]
    : /^\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}$/.test(entry) ? entry.slice(0, entry.lastIndexOf(':')) : entry
  const withoutZone = candidate.replace(/%[A-Za-z0-9_.~-]+$/, '')
  return isIP(withoutZone) !== 0 ? withoutZone : null
}
