import t from 'tap'
import { connect, createServer, type Server } from 'node:net'
import { ephemeralPortRange, FREE_PORT_FLOOR, freePort, isPublicAddress } from '../../lib/net.js'

const NOT_PUBLIC: Array<[string, string]> = [
  ['127.0.0.1', 'IPv4 loopback'],
  ['127.255.255.254', 'the far end of 127/8'],
  ['::1', 'IPv6 loopback'],
  ['10.1.2.3', 'private 10/8'],
  ['172.16.0.1', 'private 172.16/12, low end'],
  ['172.31.255.255', 'private 172.16/12, high end'],
  ['192.168.1.1', 'private 192.168/16'],
  ['169.254.169.254', 'link-local: the cloud metadata service'],
  ['fe80::1', 'IPv6 link-local'],
  ['febf:ffff::1', 'the far end of fe80::/10'],
  ['fe80::1%eth0', 'link-local with a zone index'],
  ['100.64.0.1', 'carrier-grade NAT, low end'],
  ['100.127.255.255', 'carrier-grade NAT, high end'],
  ['0.0.0.0', 'IPv4 unspecified'],
  ['0.1.2.3', '0/8'],
  ['::', 'IPv6 unspecified'],
  ['224.0.0.1', 'IPv4 multicast'],
  ['239.255.255.250', 'IPv4 multicast (SSDP)'],
  ['ff02::1', 'IPv6 multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved 240/4'],
  ['192.0.0.8', 'IETF protocol assignments 192.0.0.0/24'],
  ['198.18.0.1', 'benchmarking 198.18/15, low end'],
  ['198.19.255.255', 'benchmarking 198.18/15, high end'],
  ['192.0.2.10', 'documentation TEST-NET-1'],
  ['198.51.100.10', 'documentation TEST-NET-2'],
  ['203.0.113.10', 'documentation TEST-NET-3'],
  ['2001:db8::1', 'IPv6 documentation'],
  ['3fff::1', 'IPv6 documentation (RFC 9637)'],
  ['2001::1', 'Teredo'],
  ['fc00::1', 'unique-local fc00::/7'],
  ['fd12:3456::1', 'unique-local fd00::/8'],
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback, dotted'],
  ['::ffff:7f00:1', 'IPv4-mapped loopback, hex'],
  ['::ffff:169.254.169.254', 'IPv4-mapped metadata service'],
  ['::ffff:10.0.0.1', 'IPv4-mapped private'],
  ['0:0:0:0:0:ffff:c0a8:0101', 'IPv4-mapped private, uncompressed'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 of the metadata service'],
  ['64:ff9b::127.0.0.1', 'NAT64 of loopback'],
  ['2002:7f00:1::', '6to4 of loopback'],
  ['2002:a9fe:a9fe::1', '6to4 of the metadata service'],
  ['::127.0.0.1', 'IPv4-compatible (deprecated)'],
  ['64:ff9b:1::1', 'local-use NAT64'],
  ['not an address', 'not an address'],
  ['', 'empty'],
  ['localhost', 'a host name']
]

const PUBLIC: Array<[string, string]> = [
  ['8.8.8.8', 'a public IPv4'],
  ['1.1.1.1', 'another public IPv4'],
  ['172.15.255.255', 'just below 172.16/12'],
  ['172.32.0.1', 'just above 172.16/12'],
  ['100.63.255.255', 'just below 100.64/10'],
  ['100.128.0.1', 'just above 100.64/10'],
  ['192.0.1.1', 'between 192.0.0.0/24 and TEST-NET-1'],
  ['198.17.255.255', 'just below 198.18/15'],
  ['198.20.0.1', 'just above 198.18/15'],
  ['223.255.255.255', 'just below multicast'],
  ['2606:4700:4700::1111', 'a public IPv6'],
  ['2001:4860:4860::8888', 'a public IPv6 in 2001::/16 but outside 2001::/23'],
  ['::ffff:8.8.8.8', 'IPv4-mapped public address'],
  ['64:ff9b::808:808', 'NAT64 of a public address'],
  ['2002:808:808::1', '6to4 of a public address']
]

t.test('refuses every loopback, private, link-local, special-purpose and wrapped non-public address', async (t) => {
  for (const [address, what] of NOT_PUBLIC) t.equal(isPublicAddress(address), false, `${what}: ${address}`)
})

t.test('accepts globally routable unicast addresses, wrapped ones judged by their IPv4', async (t) => {
  for (const [address, what] of PUBLIC) t.equal(isPublicAddress(address), true, `${what}: ${address}`)
})

async function listen (port: number): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port, host: '127.0.0.1', exclusive: true }, resolve)
  })
  return server
}

t.test('freePort chooses a free port below the ephemeral range, which the kernel never hands to anyone else', async (t) => {
  const { low } = ephemeralPortRange()
  t.ok(low - FREE_PORT_FLOOR >= 1000, `this machine leaves ${low - FREE_PORT_FLOOR} ports below its ephemeral range`)
  for (let i = 0; i < 20; i++) {
    const port = await freePort()
    t.ok(port >= FREE_PORT_FLOOR && port < low, `${port} is in [${FREE_PORT_FLOOR}, ${low})`)
  }
  const server = await listen(await freePort())
  t.pass('the port it returns can be listened on at once')
  await new Promise((resolve) => server.close(resolve))
})

t.test('why: a port an outgoing connection holds as its local port cannot be listened on', async (t) => {
  // the failure freePort avoids, shown: a port of the ephemeral range, once the kernel has given it
  // to a connection, is lost to a server that meant to listen on it
  const target = await listen(0)
  const socket = connect({ host: '127.0.0.1', port: (target.address() as { port: number }).port })
  await new Promise((resolve) => socket.once('connect', resolve))
  const { low, high } = ephemeralPortRange()
  t.ok(socket.localPort! >= low && socket.localPort! <= high, `the connection's local port ${socket.localPort} is ephemeral`)
  await t.rejects(listen(socket.localPort!), { code: 'EADDRINUSE' })
  socket.destroy()
  await new Promise((resolve) => target.close(resolve))
})
