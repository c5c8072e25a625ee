import { readFileSync } from 'node:fs'
import { BlockList, createServer, isIPv4, isIPv6 } from 'node:net'

/** The kernel's range for ephemeral ports: connect() and listen(0) take their local port from it. */
export function ephemeralPortRange (): { low: number, high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (Number.isInteger(low) && Number.isInteger(high)) return { low, high }
  } catch {
    // not Linux: the IANA range
  }
  return { low: 49152, high: 65535 }
}

/** The lowest port freePort chooses; it chooses below the ephemeral range's start. */
export const FREE_PORT_FLOOR = 10_000

/** True when this process could listen on 127.0.0.1:port right now. */
async function canListen (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * A TCP port nobody listens on right now, for a child process that binds it later (the embedded
 * PostgreSQL of dev mode; the private services and servers of the tests), perhaps seconds later
 * (initdb) or again after a stop.
 *
 * Not listen(0): that port comes from the kernel's ephemeral range, and between the check and the
 * child's bind the kernel may hand it to anyone else on the machine: another server listening on
 * port 0 (Linux gives those the odd ports), or an outgoing connection once the even ports that
 * connect() prefers run short. Either makes the child's bind fail with EADDRINUSE (a connected
 * socket on the port blocks it, SO_REUSEADDR or not). A random free port below the range is never
 * handed out by the kernel; only another freePort caller could choose it too, one chance in
 * thousands.
 */
export async function freePort (): Promise<number> {
  const ceiling = Math.min(ephemeralPortRange().low, 65536)
  if (ceiling - FREE_PORT_FLOOR < 1000) return await kernelChosenPort()
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = FREE_PORT_FLOOR + Math.floor(Math.random() * (ceiling - FREE_PORT_FLOOR))
    if (await canListen(port)) return port
  }
  return await kernelChosenPort()
}

/** The fallback when the ephemeral range leaves too little below it: the OS picks. */
async function kernelChosenPort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/*
 * Which addresses a server-side fetch may reach. The IdP fetches documents at URLs that callers
 * choose (an agent's jwksUri, a federated issuer): without this check a caller could make it read
 * the cloud metadata service (169.254.169.254), an admin port on loopback or a host on the private
 * network (SSRF). Public means: globally routable unicast, nothing special-purpose.
 */

/** IPv4 ranges that are not globally reachable (RFC 6890 and its updates). */
const NON_PUBLIC_IPV4: ReadonlyArray<readonly [string, number]> = [
  ['0.0.0.0', 8], // "this network", 0.0.0.0 included
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local: the cloud metadata services live here
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['192.88.99.0', 24], // former 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4] // reserved, 255.255.255.255 (broadcast) included
]

/**
 * IPv6 is judged by an allow-list: only 2000::/3 is global unicast, so loopback, unspecified,
 * link-local (fe80::/10), unique-local (fc00::/7) and multicast (ff00::/8) all fall outside it.
 * These are the special-purpose ranges inside 2000::/3.
 */
const NON_PUBLIC_IPV6_IN_GLOBAL: ReadonlyArray<readonly [string, number]> = [
  ['2001::', 23], // IETF protocol assignments: Teredo (which hides an IPv4), benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['3fff::', 20] // documentation (RFC 9637)
]

function blockListOf (ranges: ReadonlyArray<readonly [string, number]>, family: 'ipv4' | 'ipv6'): BlockList {
  const list = new BlockList()
  for (const [network, prefix] of ranges) list.addSubnet(network, prefix, family)
  return list
}

const nonPublicIPv4 = blockListOf(NON_PUBLIC_IPV4, 'ipv4')
const nonPublicIPv6 = blockListOf(NON_PUBLIC_IPV6_IN_GLOBAL, 'ipv6')
const globalUnicastIPv6 = blockListOf([['2000::', 3]], 'ipv6')

/** An IPv6 address (already validated by isIPv6) as its eight 16-bit groups. */
function ipv6Groups (address: string): number[] {
  let text = address
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const parseHalf = (half: string): number[] => half === '' ? [] : half.split(':').map((group) => parseInt(group, 16))
  const [head = '', tail] = text.split('::')
  const front = parseHalf(head)
  if (tail === undefined) return front
  const back = parseHalf(tail)
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back]
}

function ipv4Of (high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.')
}

/**
 * The IPv4 address an IPv6 address stands for, when it is only a wrapper around one: a connection
 * to ::ffff:127.0.0.1 reaches loopback, one to 64:ff9b::a9fe:a9fe (NAT64) or 2002:a9fe:a9fe:: (6to4)
 * reaches the metadata service through a translator, so these are judged by their IPv4.
 */
function embeddedIPv4 (groups: number[]): string | null {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number]
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff) return ipv4Of(g6, g7) // ::ffff:0:0/96
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return ipv4Of(g6, g7) // 64:ff9b::/96
  if (g0 === 0x2002) return ipv4Of(g1, g2) // 2002::/16
  return null
}

/** True only for a globally routable unicast address; anything else, not-an-address included, is false. */
export function isPublicAddress (address: string): boolean {
  // a zone index (fe80::1%eth0) only ever comes with a link-local or other scoped address
  if (address.includes('%')) return false
  if (isIPv4(address)) return !nonPublicIPv4.check(address, 'ipv4')
  if (!isIPv6(address)) return false
  const wrapped = embeddedIPv4(ipv6Groups(address))
  if (wrapped !== null) return isPublicAddress(wrapped)
  return globalUnicastIPv6.check(address, 'ipv6') && !nonPublicIPv6.check(address, 'ipv6')
}
